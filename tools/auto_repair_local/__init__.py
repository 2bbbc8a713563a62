"""The local cloud: moto server plus the extensions moto lacks. Never shipped to Lambda."""
