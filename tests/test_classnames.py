"""The shipped ILSVRC-2012 class table."""

from ilsvrc.data.classnames import display_name, ilsvrc2012


def test_all_thousand_classes_in_index_order():
    table = ilsvrc2012()
    assert len(table) == 1000
    wnids = list(table)
    assert wnids == sorted(wnids) and wnids[0] == "n01440764" and wnids[-1] == "n15075141"
    assert all(w.startswith("n") and len(w) == 9 and w[1:].isdigit() for w in wnids)


def test_display_names():
    assert display_name("n01440764") == "tench"
    assert display_name("n03888257") == "parachute"
    assert display_name("airplane") == "airplane"  # not a WordNet id: the folder name stays
