"""Rendering settings: OMERO's c/m/maps/p grammar, storage round trips, defaults."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coverslip.errors import BadParameter
from coverslip.render.luts import LUT_NAMES
from coverslip.render.settings import (
    ChannelSettings,
    RenderingDef,
    apply_query,
    default_def,
    parse_format,
    parse_quality,
)


def base_def(size_c: int = 3) -> RenderingDef:
    colours = ["FF0000", "00FF00", "0000FF", "FFFFFF", "FF00FF"]
    channels = tuple(
        ChannelSettings(active=True, start=0, end=255, color=colours[i % 5]) for i in range(size_c)
    )
    return RenderingDef(channels=channels, model="color", default_z=2)


def query_dict(query: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in query.split("&"))


# ---------------------------------------------------------------------------------------------
# c=


def test_the_documented_example() -> None:
    rdef = apply_query(base_def(), {"c": "1|100:2000$FF0000,-2|0:500$00FF00,3$fire.lut"}, 3)
    one, two, three = rdef.channels
    assert (one.active, one.start, one.end, one.color, one.lut) == (True, 100, 2000, "FF0000", None)
    assert (two.active, two.start, two.end, two.color) == (False, 0, 500, "00FF00")
    assert (three.active, three.start, three.end, three.lut) == (True, 0, 255, "fire.lut")
    assert three.color == "0000FF"  # the colour stays under the LUT


def test_unlisted_channels_become_inactive_and_keep_their_settings() -> None:
    base = base_def(4)
    rdef = apply_query(base, {"c": "2"}, 4)
    assert [ch.active for ch in rdef.channels] == [False, True, False, False]
    assert [replace(ch, active=True) for ch in rdef.channels] == list(base.channels)


def test_a_listed_channel_is_active_if_listed_without_minus() -> None:
    rdef = apply_query(base_def(), {"c": "-1,1,-2"}, 3)
    assert [ch.active for ch in rdef.channels] == [True, False, False]


@pytest.mark.parametrize(
    ("text", "color", "alpha"),
    [
        ("F00", "FF0000", 255),
        ("f008", "FF0000", 0x88),
        ("12aBcD", "12ABCD", 255),
        ("12ABCD80", "12ABCD", 0x80),
    ],
)
def test_colour_forms(text: str, color: str, alpha: int) -> None:
    base = apply_query(base_def(), {"c": "1$fire.lut"}, 3)
    rdef = apply_query(base, {"c": f"1|5:10${text}"}, 3)
    assert (rdef.channels[0].color, rdef.channels[0].alpha, rdef.channels[0].lut) == (
        color,
        alpha,
        None,
    )


@pytest.mark.parametrize("name", ["fire.lut", "hilo.lut", "viridis.lut"])
def test_lut_names(name: str) -> None:
    rdef = apply_query(base_def(), {"c": f"1${name}"}, 3)
    assert rdef.channels[0].lut == name


@pytest.mark.parametrize("name", ["fire", "FIRE.LUT", "Viridis"])
def test_lut_names_other_than_the_file_name_change_nothing(name: str) -> None:
    # As OMERO: omero-py ignores a value that is neither a colour nor ends in ".lut".
    base = apply_query(base_def(), {"c": "1$00FF00,2$ice.lut"}, 3)
    rdef = apply_query(base, {"c": f"1${name},2${name}"}, 3)
    assert (rdef.channels[0].color, rdef.channels[0].lut) == ("00FF00", None)
    assert rdef.channels[1].lut == "ice.lut"


@pytest.mark.parametrize("name", ["nope.lut", "FIRE.lut", "FF0000.lut"])
def test_an_unknown_lut_file_leaves_the_channel_in_its_colour(name: str) -> None:
    # As OMERO: the LUT is set, no table of that exact name exists, the colour shows.
    base = apply_query(base_def(), {"c": "1$00FF00,2$ice.lut"}, 3)
    rdef = apply_query(base, {"c": f"1${name},2${name}"}, 3)
    colour = base.channels[1].color
    assert [(ch.color, ch.lut) for ch in rdef.channels[:2]] == [("00FF00", None), (colour, None)]


def test_colour_before_window_and_negative_windows() -> None:
    rdef = apply_query(base_def(), {"c": " 1$00FF00|-20.5:1e3 , 2|-300:-10"}, 3)
    assert rdef.channels[0].color == "00FF00"
    assert (rdef.channels[0].start, rdef.channels[0].end) == (-20.5, 1000.0)
    assert (rdef.channels[1].start, rdef.channels[1].end) == (-300.0, -10.0)


# ---------------------------------------------------------------------------------------------
# m=, p=, maps=


@pytest.mark.parametrize(
    ("value", "model"),
    [("g", "greyscale"), ("c", "color"), ("greyscale", "greyscale"), ("rgb", "color")],
)
def test_model(value: str, model: str) -> None:
    assert apply_query(base_def(), {"m": value}, 3).model == model


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("intmax", ("intmax", None, None)),
        ("intmean|2:5", ("intmean", 2, 5)),
        ("intsum|-3:4", ("intsum", 0, 4)),
        ("normal", ("normal", None, None)),
        ("normal|1:2", ("normal", None, None)),
    ],
)
def test_projection(value: str, expected: tuple[str, int | None, int | None]) -> None:
    base = replace(base_def(), projection="intmax", projection_start=1, projection_end=1)
    rdef = apply_query(base, {"p": value}, 3)
    assert (rdef.projection, rdef.projection_start, rdef.projection_end) == expected


def test_maps_follow_the_order_of_c() -> None:
    maps = [
        {
            "inverted": {"enabled": True},
            "quantization": {"family": "exponential", "coefficient": 1.8},
        },
        {"reverse": {"enabled": "true"}},
        None,
    ]
    rdef = apply_query(base_def(), {"c": "3,-1,2", "maps": json.dumps(maps)}, 3)
    one, two, three = rdef.channels
    assert (three.inverted, three.family, three.coefficient) == (True, "exponential", 1.8)
    assert (one.inverted, one.family) == (True, "linear")
    assert (two.inverted, two.family) == (False, "linear")


def test_a_map_without_inverted_switches_it_off() -> None:
    inverted = apply_query(base_def(), {"maps": '[{"inverted": {"enabled": true}}]'}, 3)
    assert inverted.channels[0].inverted
    back = apply_query(inverted, {"maps": '[{"quantization": {"family": "polynomial"}}]'}, 3)
    assert not back.channels[0].inverted
    assert (back.channels[0].family, back.channels[0].coefficient) == ("polynomial", 1.0)


def test_maps_without_c_go_per_channel() -> None:
    maps = [{}, {"inverted": {"enabled": True}}]
    rdef = apply_query(base_def(), {"maps": json.dumps(maps)}, 3)
    assert [ch.inverted for ch in rdef.channels] == [False, True, False]
    assert [ch.active for ch in rdef.channels] == [True, True, True]


# ---------------------------------------------------------------------------------------------
# Malformed values


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"c": ""}, "c"),
        ({"c": "0"}, "c"),
        ({"c": "4"}, "c"),
        ({"c": "-4"}, "c"),
        ({"c": "99999999999999999999999"}, "c"),
        ({"c": "x"}, "c"),
        ({"c": "1,"}, "c"),
        ({"c": "1|"}, "c"),
        ({"c": "1|5"}, "c"),
        ({"c": "1|5:"}, "c"),
        ({"c": "1|a:b"}, "c"),
        ({"c": "1|1:2:3"}, "c"),
        ({"c": "1|nan:5"}, "c"),
        ({"c": "1|0:inf"}, "c"),
        ({"c": "1$"}, "c"),
        ({"c": "1$GG0000"}, "c"),
        ({"c": "1$12345"}, "c"),
        ({"c": "١"}, "c"),  # a digit, but not an ASCII one
        ({"m": ""}, "m"),
        ({"m": "x"}, "m"),
        ({"m": "G"}, "m"),
        ({"p": ""}, "p"),
        ({"p": "median"}, "p"),
        ({"p": "intmax|"}, "p"),
        ({"p": "intmax|1"}, "p"),
        ({"p": "intmax|a:2"}, "p"),
        ({"p": "intmax|1.5:2"}, "p"),
        ({"p": "intmax|5:2"}, "p"),
        ({"p": "intmax|0:-1"}, "p"),
        ({"maps": ""}, "maps"),
        ({"maps": "{"}, "maps"),
        ({"maps": "{}"}, "maps"),
        ({"maps": "[1]"}, "maps"),
        ({"maps": "[[]]"}, "maps"),
        ({"maps": "[{}, {}, {}, {}]"}, "maps"),
        ({"maps": '[{"inverted": true}]'}, "maps"),
        ({"maps": '[{"inverted": {"enabled": "yes"}}]'}, "maps"),
        ({"maps": '[{"quantization": {}}]'}, "maps"),
        ({"maps": '[{"quantization": 3}]'}, "maps"),
        ({"maps": '[{"quantization": {"family": "cubic"}}]'}, "maps"),
        ({"maps": '[{"quantization": {"family": "linear", "coefficient": "2"}}]'}, "maps"),
        ({"maps": '[{"quantization": {"family": "linear", "coefficient": true}}]'}, "maps"),
        ({"maps": '[{"quantization": {"family": "linear", "coefficient": 0}}]'}, "maps"),
        ({"maps": '[{"quantization": {"family": "linear", "coefficient": -1}}]'}, "maps"),
        ({"maps": '[{"quantization": {"family": "linear", "coefficient": NaN}}]'}, "maps"),
        ({"maps": '[{"quantization": {"family": "linear", "coefficient": 1e400}}]'}, "maps"),
        (
            {"maps": '[{"quantization": {"family": "linear", "coefficient": ' + "9" * 400 + "}}]"},
            "maps",
        ),
        ({"maps": "[" * 100_000}, "maps"),
        ({"c": "1", "maps": "[{}, {}]"}, "maps"),
    ],
)
def test_malformed_values_name_the_parameter(params: dict[str, str], name: str) -> None:
    with pytest.raises(BadParameter) as info:
        apply_query(base_def(), params, 3)
    assert info.value.name == name


@pytest.mark.parametrize("q", ["-0.1", "1.01", "nan", "x", "", "inf"])
def test_bad_quality(q: str) -> None:
    with pytest.raises(BadParameter) as info:
        parse_quality(q)
    assert info.value.name == "q"


def test_quality_and_format() -> None:
    assert parse_quality(None) == 0.9
    assert parse_quality("0") == 0.0 and parse_quality("1") == 1.0 and parse_quality(" .85") == 0.85
    assert [parse_format(f) for f in ("jpg", "JPEG", "png", "tif", "TIFF", None)] == [
        "jpeg",
        "jpeg",
        "png",
        "tif",
        "tif",
        "jpeg",
    ]
    for bad in ("gif", "", "jpeg2000"):
        with pytest.raises(BadParameter) as info:
            parse_format(bad)
        assert info.value.name == "format"


# ---------------------------------------------------------------------------------------------
# Round trips


finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)


@st.composite
def channel_settings(draw: st.DrawFn) -> ChannelSettings:
    start, end = sorted((draw(finite), draw(finite)))
    family = draw(st.sampled_from(["linear", "polynomial", "exponential", "logarithmic"]))
    lut = draw(st.none() | st.sampled_from(LUT_NAMES).map(lambda n: n + ".lut"))
    return ChannelSettings(
        active=draw(st.booleans()),
        start=start,
        end=end,
        color=draw(st.from_regex(r"[0-9A-F]{6}", fullmatch=True)),
        lut=lut,
        family=family,
        coefficient=draw(st.floats(min_value=0.01, max_value=100)),
        inverted=draw(st.booleans()),
        alpha=draw(st.sampled_from([255, 0, 128])),
    )


@st.composite
def rendering_defs(draw: st.DrawFn) -> RenderingDef:
    channels = tuple(draw(st.lists(channel_settings(), min_size=1, max_size=6)))
    projection = draw(st.sampled_from(["normal", "intmax", "intmean", "intsum"]))
    start = end = None
    if projection != "normal" and draw(st.booleans()):
        start = draw(st.integers(0, 50))
        end = start + draw(st.integers(0, 50))
    return RenderingDef(
        channels=channels,
        model=draw(st.sampled_from(["color", "greyscale"])),
        projection=projection,
        projection_start=start,
        projection_end=end,
        default_z=draw(st.integers(0, 10)),
        default_t=draw(st.integers(0, 10)),
    )


@settings(max_examples=150, deadline=None)
@given(rendering_defs())
def test_query_round_trip(rdef: RenderingDef) -> None:
    size_c = len(rdef.channels)
    blank = RenderingDef(
        channels=tuple(
            replace(ch, start=1, end=2, inverted=not ch.inverted) for ch in rdef.channels
        ),
        model="greyscale" if rdef.model == "color" else "color",
        default_z=rdef.default_z,
        default_t=rdef.default_t,
    )
    parsed = apply_query(blank, query_dict(rdef.to_query()), size_c)
    # Under a LUT the colour is not part of the query: it stays what the base had.
    expected = replace(
        rdef,
        channels=tuple(
            replace(ch, color=b.color, alpha=b.alpha) if ch.lut else ch
            for ch, b in zip(rdef.channels, blank.channels, strict=True)
        ),
    )
    assert parsed == expected


@settings(max_examples=150, deadline=None)
@given(rendering_defs())
def test_json_round_trip(rdef: RenderingDef) -> None:
    stored = json.loads(json.dumps(rdef.to_json()))
    assert RenderingDef.from_json(stored) == rdef


def test_to_query_is_readable() -> None:
    rdef = RenderingDef(
        channels=(
            ChannelSettings(start=100, end=2000.5, color="FF0000"),
            ChannelSettings(active=False, lut="fire.lut", inverted=True),
        ),
        model="greyscale",
        projection="intmax",
        projection_start=1,
        projection_end=4,
    )
    query = query_dict(rdef.to_query())
    assert query["c"] == "1|100:2000.5$FF0000,-2|0:255$fire.lut"
    assert query["m"] == "g" and query["p"] == "intmax|1:4"
    assert json.loads(query["maps"])[1] == {
        "inverted": {"enabled": True},
        "quantization": {"family": "linear", "coefficient": 1.0},
    }


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"channels": 3},
        {"channels": [{"start": "x", "end": 1}]},
        {"channels": [{"start": 0}]},
        {"channels": [{"start": 0, "end": 1, "family": "cubic"}]},
        {"channels": [{"start": 0, "end": 1, "lut": "nope"}]},
        {"channels": [{"start": 0, "end": 1, "color": "red"}]},
        {"channels": [], "model": "hsb"},
        {"channels": [], "projection": "median"},
    ],
)
def test_bad_stored_settings(data: dict[str, object]) -> None:
    with pytest.raises(BadParameter) as info:
        RenderingDef.from_json(data)
    assert info.value.name == "rdef"


# ---------------------------------------------------------------------------------------------
# Fuzzing: nothing but BadParameter ever comes out


grammar_text = st.text(alphabet='0123456789-+|:$,.eE FfAa#lutirevgcnmxpsa"{}[]\\', max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    c=st.none() | grammar_text | st.text(max_size=30),
    m=st.none() | st.text(max_size=8),
    maps=st.none()
    | st.text(max_size=30)
    | st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
        ),
        max_leaves=12,
    ).map(json.dumps),
    p=st.none() | grammar_text | st.text(max_size=20),
)
def test_fuzz_only_bad_parameter(
    c: str | None, m: str | None, maps: str | None, p: str | None
) -> None:
    params = {k: v for k, v in {"c": c, "m": m, "maps": maps, "p": p}.items() if v is not None}
    try:
        rdef = apply_query(base_def(), params, 3)
    except BadParameter as exc:
        assert exc.name in params
        return
    assert len(rdef.channels) == 3
    assert apply_query(base_def(), query_dict(rdef.to_query()), 3) is not None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["inverted", "reverse", "quantization", "x"]),
            st.sampled_from(["family", "coefficient", "enabled"]),
            st.none()
            | st.booleans()
            | st.floats()
            | st.integers()
            | st.sampled_from(["linear", "true", "logarithmic"]),
        ),
        max_size=4,
    )
)
def test_fuzz_maps_objects(entries: list[tuple[str, str, object]]) -> None:
    item: dict[str, dict[str, object]] = {}
    for outer, inner, value in entries:
        item.setdefault(outer, {})[inner] = value
    try:
        apply_query(base_def(), {"maps": json.dumps([item])}, 3)
    except BadParameter as exc:
        assert exc.name == "maps"


# ---------------------------------------------------------------------------------------------
# Defaults


@dataclass
class Meta:
    color: str | None
    window_start: float
    window_end: float
    emission_wave: float | None = None
    name: str = ""


def test_single_channel_defaults_to_greyscale() -> None:
    rdef = default_def([Meta("00FF00", 5, 60)], "uint8", size_z=7, size_t=3)
    assert rdef.model == "greyscale" and rdef.default_z == 3 and rdef.default_t == 0
    (ch,) = rdef.channels
    assert (ch.active, ch.start, ch.end, ch.color, ch.lut) == (True, 5, 60, "00FF00", None)
    assert (ch.family, ch.coefficient, ch.inverted) == ("linear", 1.0, False)


def test_first_three_channels_active_and_colours() -> None:
    channels = [
        Meta("ff8800", 0, 10),
        Meta(None, 0, 10, emission_wave=460),
        Meta(None, 0, 10, emission_wave=520),
        Meta(None, 0, 10, emission_wave=610),
        Meta(None, 0, 10),
        {"color": None, "window_start": 3, "window_end": 1},
    ]
    rdef = default_def(channels, "uint16", size_z=1, size_t=1)
    assert rdef.model == "color" and rdef.default_z == 0
    assert [ch.active for ch in rdef.channels] == [True, True, True, False, False, False]
    # OMERO's resetChannelBindings: some channels without a file colour have an emission
    # wavelength and some do not, so those without one are white.
    assert [ch.color for ch in rdef.channels] == [
        "FF8800",
        "0000FF",
        "00FF00",
        "FF0000",
        "FFFFFF",
        "FFFFFF",
    ]
    assert (rdef.channels[5].start, rdef.channels[5].end) == (1, 3)


def test_defaults_fill_a_missing_window_from_the_type() -> None:
    rdef = default_def(
        [{"color": "FFFFFF", "window_start": None, "window_end": None}], "int8", 1, 1
    )
    assert (rdef.channels[0].start, rdef.channels[0].end) == (-128, 127)
