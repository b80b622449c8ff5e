"""GenEval decision rules on hand-built detections, one case per tag plus the edge cases."""
from __future__ import annotations

import pytest

from tsbench.scoring.geneval_rules import (
    Detection,
    RuleOptions,
    filter_detections,
    judge,
    relative_position,
)


def det(x1, y1, x2, y2, score=0.95):
    return Detection((float(x1), float(y1), float(x2), float(y2)), score)


def fake_colors(*colors):
    """Colour classifier returning fixed colours in order, recording what it was asked."""
    calls = []

    def classify(image, objects, classname):
        calls.append((classname, list(objects)))
        return list(colors[: len(objects)])

    classify.calls = calls
    return classify


SINGLE = {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}
TWO = {"tag": "two_object", "include": [{"class": "cat", "count": 1}, {"class": "dog", "count": 1}],
       "prompt": "a photo of a cat and a dog"}
COUNT3 = {"tag": "counting", "include": [{"class": "cup", "count": 3}], "exclude": [{"class": "cup", "count": 4}],
          "prompt": "a photo of three cups"}
COLORS = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a photo of a red car"}
COLOR_ATTR = {"tag": "color_attr",
              "include": [{"class": "car", "count": 1, "color": "red"}, {"class": "bus", "count": 1, "color": "blue"}],
              "prompt": "a photo of a red car and a blue bus"}
POSITION = {"tag": "position",
            "include": [{"class": "dog", "count": 1}, {"class": "cat", "count": 1, "position": ["left of", 0]}],
            "prompt": "a photo of a cat left of a dog"}


def test_single_object_present_and_missing():
    assert judge(SINGLE, {"bench": [det(0, 0, 10, 10, 0.5)]}).correct
    missing = judge(SINGLE, {"dog": [det(0, 0, 10, 10)]})
    assert not missing.correct and missing.reason == "expected bench>=1, found 0"


def test_threshold_is_strictly_greater():
    at = judge(SINGLE, {"bench": [det(0, 0, 10, 10, 0.3)]})
    assert not at.correct and at.reason == "expected bench>=1, found 0"
    assert judge(SINGLE, {"bench": [det(0, 0, 10, 10, 0.3001)]}).correct


def test_two_object_needs_both():
    assert judge(TWO, {"cat": [det(0, 0, 5, 5)], "dog": [det(10, 10, 20, 20)]}).correct
    r = judge(TWO, {"cat": [det(0, 0, 5, 5)]})
    assert not r.correct and r.reason == "expected dog>=1, found 0"


def cups(n, score=0.95):
    return [det(10 * i, 0, 10 * i + 8, 8, score) for i in range(n)]


def test_counting_exact_number():
    assert judge(COUNT3, {"cup": cups(3)}).correct
    fewer = judge(COUNT3, {"cup": cups(2)})
    assert not fewer.correct and fewer.reason == "expected cup>=3, found 2"


def test_counting_n_plus_one_fails_through_exclude():
    r = judge(COUNT3, {"cup": cups(4)})
    assert not r.correct and r.reason == "expected cup<4, found 4"


def test_counting_uses_the_0_9_threshold():
    # a fourth cup at 0.85 passes the normal 0.3 threshold but not the counting one
    r = judge(COUNT3, {"cup": cups(3) + [det(50, 0, 58, 8, 0.85)]})
    assert r.correct and len(r.kept["cup"]) == 3
    # and three cups of which one is at 0.9 exactly: only two count
    assert not judge(COUNT3, {"cup": cups(2) + [det(50, 0, 58, 8, 0.9)]}).correct


def test_at_most_16_objects_per_class_most_confident_first():
    dets = [det(i, 0, i + 1, 1, 0.31 + i / 100) for i in range(20)]
    kept = filter_detections({"cup": dets}, "two_object")["cup"]
    assert len(kept) == 16
    assert [d.score for d in kept] == sorted((d.score for d in dets), reverse=True)[:16]


def test_optional_nms_drops_overlapping_boxes():
    dets = [det(0, 0, 10, 10, 0.9), det(1, 1, 11, 11, 0.8), det(50, 50, 60, 60, 0.7)]
    assert len(filter_detections({"cup": dets}, "single_object")["cup"]) == 3  # max_overlap 1.0: off
    kept = filter_detections({"cup": dets}, "single_object", RuleOptions(max_overlap=0.5))["cup"]
    assert [d.score for d in kept] == [0.9, 0.7]


def test_colors_match_and_mismatch():
    clf = fake_colors("red")
    r = judge(COLORS, {"car": [det(0, 0, 10, 10)]}, color_classifier=clf, image="IMG")
    assert r.correct and clf.calls[0][0] == "car"
    bad = judge(COLORS, {"car": [det(0, 0, 10, 10)]}, color_classifier=fake_colors("blue"))
    assert not bad.correct and bad.reason == "expected red car>=1, found 0 red; and 1 blue"


def test_colour_is_checked_on_the_most_confident_objects_only():
    clf = fake_colors("red")
    low, high = det(0, 0, 5, 5, 0.4), det(20, 20, 30, 30, 0.9)
    judge(COLORS, {"car": [low, high]}, color_classifier=clf)
    assert clf.calls[0][1] == [high]


def test_color_attr_both_clauses():
    dets = {"car": [det(0, 0, 10, 10)], "bus": [det(20, 0, 40, 10)]}
    assert judge(COLOR_ATTR, dets, color_classifier=fake_colors("red", "blue")).correct is False  # bus got "red"

    def by_class(image, objects, classname):
        return {"car": ["red"], "bus": ["blue"]}[classname]

    assert judge(COLOR_ATTR, dets, color_classifier=by_class).correct
    r = judge(COLOR_ATTR, {"car": [det(0, 0, 10, 10)]}, color_classifier=by_class)
    assert not r.correct and r.reason == "expected bus>=1, found 0"


def test_colour_without_classifier_is_an_error():
    with pytest.raises(ValueError, match="color_classifier"):
        judge(COLORS, {"car": [det(0, 0, 10, 10)]})


def test_position_correct_and_wrong():
    dog, cat_left, cat_right = det(100, 0, 140, 40), det(0, 0, 40, 40), det(200, 0, 240, 40)
    assert judge(POSITION, {"dog": [dog], "cat": [cat_left]}).correct
    r = judge(POSITION, {"dog": [dog], "cat": [cat_right]})
    assert not r.correct and r.reason == "expected cat left of target, found right of target"


def test_position_without_target():
    r = judge(POSITION, {"cat": [det(0, 0, 40, 40)]})
    assert not r.correct
    assert r.reason == "expected dog>=1, found 0\nno target for cat to be left of"


def test_position_overlapping_boxes_have_no_relation():
    a, b = det(0, 0, 100, 100), det(10, 0, 110, 100)  # offset 10 < 0.1 * (100 + 100)
    assert relative_position(a, b) == set()
    r = judge(POSITION, {"dog": [b], "cat": [a]})
    assert not r.correct and r.reason == "expected cat left of target, found  target"


def test_position_exactly_on_the_threshold():
    # offset (4, 3), |offset| = 5; widths sum 15 -> revised x = 4 - 1.5 = 2.5 -> dx = 0.5 exactly;
    # heights sum 10 -> revised y = 3 - 1 = 2 -> dy = 0.4. 0.5 is not > 0.5: no relation at all.
    b = det(0, 0, 5, 5)  # centre (2.5, 2.5), size 5 x 5
    a = det(1.5, 0.5, 11.5, 10.5)  # centre (6.5, 5.5), size 10 x 10 -> offset (4, 3)
    assert relative_position(a, b) == set()
    a_further = det(1.6, 0.5, 11.6, 10.5)  # a hair further right: dx > 0.5
    assert relative_position(a_further, b) == {"right of"}


def test_relative_position_all_directions_and_threshold_option():
    b = det(0, 0, 10, 10)
    assert relative_position(det(-30, 0, -20, 10), b) == {"left of"}
    assert relative_position(det(0, -30, 10, -20), b) == {"above"}
    assert relative_position(det(0, 30, 10, 40), b) == {"below"}
    assert relative_position(det(30, 30, 40, 40), b) == {"right of", "below"}
    near = det(12, 0, 22, 10)  # offset 12 vs margin 0.1 * 20 = 2
    assert relative_position(near, b) == {"right of"}
    assert relative_position(near, b, position_threshold=0.7) == set()  # margin 14 > 12


def test_every_positioned_object_against_every_target():
    meta = {"tag": "position", "include": [{"class": "dog", "count": 2},
                                           {"class": "cat", "count": 1, "position": ["above", 0]}], "prompt": "p"}
    dogs = [det(0, 100, 10, 110), det(50, 100, 60, 110)]
    assert judge(meta, {"dog": dogs, "cat": [det(20, 0, 30, 10)]}).correct
    low_dog = [dogs[0], det(50, -50, 60, -40)]  # second dog is higher than the cat
    assert not judge(meta, {"dog": low_dog, "cat": [det(20, 0, 30, 10)]}).correct


def test_rule_options_from_official_strings():
    opts = RuleOptions.from_strings({"threshold": "0.5", "max_objects": "4"})
    assert opts.threshold == 0.5 and opts.max_objects == 4 and opts.counting_threshold == 0.9
    assert not judge(SINGLE, {"bench": [det(0, 0, 1, 1, 0.4)]}, options=opts).correct
    with pytest.raises(ValueError, match="unknown GenEval rule option"):
        RuleOptions.from_strings({"treshold": "0.5"})
