"""The shared vocabulary of datasets, samplers, models and evaluation: modality labels, the
modality of a dataset item, and a cross-modal evaluation protocol."""
import collections

VISIBLE = 0
INFRARED = 1
NAMES = {VISIBLE: "visible", INFRARED: "infrared"}

# one cross-modal evaluation: query tracklets of one modality from a split, gallery of the other
Protocol = collections.namedtuple(
    "Protocol", "name query_split query_modality gallery_split gallery_modality")


def modality_of(item):
    """The modality of a dataset item; -1 for a plain torchreid tuple."""
    return getattr(item, "modality", -1)
