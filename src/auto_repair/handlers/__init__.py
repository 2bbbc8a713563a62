"""Handlers, one module per workflow state. Each is thin: parse, call the domain, return a dict."""
