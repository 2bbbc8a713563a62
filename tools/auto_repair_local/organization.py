"""The local cloud's AWS Organization: fixed member account ids, and the org facts policies are evaluated with.

moto's ``CreateAccount`` gives a member a random id; the local cloud's organisation has stable ones (the contract's
111111111111 and 222222222222) so tests, templates' parameters and notices can name them. A ``CreateAccount``
request whose ``Tags`` carry ``auto-repair-local:account-id`` = a 12-digit id creates the account with that id
(refused with ``DuplicateAccountException`` if an organisation already has it, ``InvalidInputException`` if it
is not 12 digits); without the tag moto's random id
is used, as on AWS. Nothing else of CreateAccount changes (the ``OrganizationAccountAccessRole`` trusted by the
management account is created in the new account, as AWS does).

``org_facts(account)`` answers what AWS puts in a request's context for a principal or resource of that account:
``aws:PrincipalOrgID``/``aws:ResourceOrgID`` (the organisation id) and ``aws:PrincipalOrgPaths`` (one path,
``o-xxx/r-xxx/ou-xxx/.../``), https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html

Patches (see ``MOTO_TOUCHPOINTS``): wraps ``moto.organizations.models.OrganizationsBackend.create_account``.
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.organizations.models.OrganizationsBackend.create_account(**kwargs)",
    "moto.organizations.models.OrganizationsBackend#org",
    "moto.organizations.models.OrganizationsBackend#accounts",
    "moto.organizations.models.OrganizationsBackend#ou",
    "moto.organizations.models.organizations_backends",
    "moto.organizations.models.OrganizationsBackendDict#master_accounts",
    "moto.organizations.utils.make_random_account_id()",
    "moto.core.exceptions.ServiceException",
)

ACCOUNT_ID_TAG = "auto-repair-local:account-id"
_ACCOUNT_ID = re.compile(r"^\d{12}$")
_create_lock = threading.Lock()


@dataclass(frozen=True)
class OrgFacts:
    organization_id: str
    path: str  # o-xxx/r-xxx/ou-.../ (ends with '/')
    management_account: str


def org_facts(account_id: str) -> OrgFacts | None:
    """The organisation ``account_id`` is an ACTIVE member (or the management account) of, if any."""
    from moto.organizations.models import organizations_backends

    owner = organizations_backends.master_accounts.get(account_id)
    management, partition = owner if owner else (account_id, "aws")
    if management not in organizations_backends:
        return None
    backend = organizations_backends[management][partition]
    org = backend.org
    if org is None:
        return None
    account = next((a for a in backend.accounts if a.id == account_id and a.status == "ACTIVE"), None)
    if account is None:
        return None
    chain: list[str] = []
    parent: str | None = account.parent_id
    units = {ou.id: ou for ou in backend.ou}
    while parent and parent != org.root_id and parent in units and len(chain) < 10:
        chain.insert(0, parent)
        parent = units[parent].parent_id
    path = f"{org.id}/{org.root_id}/" + "".join(f"{ou}/" for ou in chain)
    return OrgFacts(organization_id=org.id, path=path, management_account=org.master_account_id)


def install(ctx: Any) -> None:
    from moto.core.exceptions import ServiceException
    from moto.organizations import models, utils
    from moto.organizations.models import organizations_backends

    original = models.OrganizationsBackend.create_account
    if getattr(original, "_auto_repair_local", False):
        return

    class DuplicateAccountException(ServiceException):
        code = "DuplicateAccountException"

    class InvalidInputException(ServiceException):
        code = "InvalidInputException"

    def create_account(self: Any, **kwargs: Any) -> dict[str, Any]:
        wanted = next((t.get("Value") for t in kwargs.get("Tags") or [] if t.get("Key") == ACCOUNT_ID_TAG), None)
        if wanted is None:
            return original(self, **kwargs)
        if not _ACCOUNT_ID.match(str(wanted)):
            raise InvalidInputException(f"{ACCOUNT_ID_TAG} must be 12 digits, not {wanted!r}")
        with _create_lock:
            taken = wanted in organizations_backends.master_accounts or any(
                a.id == wanted for a in self.accounts
            )
            if taken or wanted == self.account_id:
                raise DuplicateAccountException(f"The account {wanted} already belongs to an organization.")
            random_id = utils.make_random_account_id
            utils.make_random_account_id = lambda: wanted
            try:
                return original(self, **kwargs)
            finally:
                utils.make_random_account_id = random_id

    create_account._auto_repair_local = True  # type: ignore[attr-defined]
    models.OrganizationsBackend.create_account = create_account  # type: ignore[method-assign]
