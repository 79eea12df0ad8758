"""``python -m vld_plugin``: show what the plugin registers into torchreid."""
from .registry import registry_table

print(registry_table())
