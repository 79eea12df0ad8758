"""The paper's ablations (Tables III-VII) in one table:
``python projects/VLD/ablation.py --config-file configs/vld_vcm.yaml --tables III V VI VII [--dry-run]``."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from vld_plugin.ablation import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
