"""The operator command line: auto-repair local|approve|reject|incidents|diagnose|targets|package."""
