"""``python -m gimp_plugin install|uninstall``: see gimp_plugin.installer."""
import sys

from .installer import main

if __name__ == "__main__":
    sys.exit(main())
