"""The admin kit (``adminkit.kit``): shared admin pieces that depend on nothing above ``config``."""
