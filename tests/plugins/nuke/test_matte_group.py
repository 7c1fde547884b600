"""The SamRoto Group's content as data: object names, channels and layers, the alpha expression."""

from __future__ import annotations

from samroto_nuke.matte_group import ObjectMatte, alpha_expression, object_names, plan_group, stereo_pattern


def test_object_names_are_valid_unique_channel_names() -> None:
    assert object_names("hero, car", [1, 2, 3]) == {1: "hero", 2: "car", 3: "obj3"}
    assert object_names("left arm!, 2nd, hero, hero, alpha", [1, 2, 3, 4, 5]) == {
        1: "left_arm", 2: "obj_2nd", 3: "hero", 4: "hero_4", 5: "alpha_5"}
    assert object_names("", [2]) == {2: "obj2"}


def test_four_channels_a_layer_and_the_alpha_merges_or_picks() -> None:
    objects = [ObjectMatte(o, "o%d" % o, "/m/o%d.####.exr" % o) for o in (6, 1, 2, 3, 4, 5)]
    plan = plan_group(objects, chosen=None, first=1001, last=1010, offset=-1000)
    assert [o.obj_id for o in plan.objects] == [1, 2, 3, 4, 5, 6]
    assert plan.layers == (("samroto", ("samroto.o1", "samroto.o2", "samroto.o3", "samroto.o4")),
                           ("samroto2", ("samroto2.o5", "samroto2.o6")))
    assert plan.channels[5] == "samroto2.o5"
    assert plan.alpha.count("max(") == 5 and "samroto2.o6" in plan.alpha
    assert plan_group(objects, chosen=5, first=1, last=2).alpha == "samroto2.o5"
    assert alpha_expression({}, None) == "0" and alpha_expression({1: "samroto.a"}, 7) == "0"


def test_a_stereo_matte_pattern_names_the_view_as_nukes_token() -> None:
    assert stereo_pattern("/m/sh_SamRoto_left_obj1_matte.####.exr", "left") == "/m/sh_SamRoto_%V_obj1_matte.####.exr"
    assert stereo_pattern("/m/left/sh_SamRoto_obj1.####.exr", "left") == "/m/left/sh_SamRoto_obj1.####.exr"
    assert stereo_pattern("/m/sh_obj1.####.exr", "") == "/m/sh_obj1.####.exr"
