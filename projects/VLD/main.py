"""Train and evaluate VLD with torchreid: ``python projects/VLD/main.py --config-file configs/vld_vcm.yaml``."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from vld_plugin.launch import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
