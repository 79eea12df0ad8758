"""Train and evaluate VLD with torchreid: ``python projects/VLD/main.py --config-file configs/vld_vcm.yaml``."""
import sys

try:
    from vld_plugin.launch import main
except ModuleNotFoundError as e:  # run from a checkout without installing it
    print(f"error: {e}; install the plugin and its dependencies first: pip install -e . (in the repository root)",
          file=sys.stderr)
    sys.exit(2)

if __name__ == "__main__":
    sys.exit(main())
