"""The argument syntax for models and KD methods: parsing, canonical form, sweeps and checks against signatures."""

import pytest

from bench.components.factory_args import arguments, check_component, docstring_args, resolve_components, resolve_sweeps
from bench.components.syntax import (
    Component,
    format_value,
    parse_component,
    parse_components,
    parse_sweeps,
    parse_value,
)
from bench.errors import BenchError


def test_kd_list_with_arguments_parses_into_components():
    got = parse_components("ca:weight=0.1,ms:norm=global:tau_fn=1", "kd", "--kd")
    assert got == [Component("ca", {"weight": 0.1}), Component("ms", {"norm": "global", "tau_fn": 1})]


def test_values_are_toml_scalars_and_bare_words_are_strings():
    assert parse_value("0.1", "k") == 0.1
    assert parse_value("16", "k") == 16
    assert parse_value("true", "k") is True
    assert parse_value("global", "k") == "global"
    assert parse_value('"a,b"', "k") == "a,b"
    assert parse_value("[16,32,64]", "k") == [16, 32, 64]


def test_composition_keeps_arguments_per_part_and_omits_parts_without_any():
    (c,) = parse_components("ca:weight=0.1+ms", "kd", "--kd")
    assert c == Component("ca+ms", {"ca": {"weight": 0.1}})
    assert [str(p) for p in c.parts] == ["ca:weight=0.1", "ms"]


def test_separators_inside_brackets_and_quotes_do_not_split():
    got = parse_components('lcovnet:channels=[8,16,32,64,128],x:s="a,b|c+d:e"', "model", "--models")
    assert got == [Component("lcovnet", {"channels": [8, 16, 32, 64, 128]}), Component("x", {"s": "a,b|c+d:e"})]


def test_a_plus_in_a_number_does_not_join_methods():
    assert parse_components("ca:weight=1e+3+ms", "kd", "--kd") == [Component("ca+ms", {"ca": {"weight": 1000.0}})]
    assert parse_components("ca:weight=0.1 + ms", "kd", "--kd") == [Component("ca+ms", {"ca": {"weight": 0.1}})]


@pytest.mark.parametrize(
    "text",
    ["ca:weight=0.1+ms", "ms:norm=global:tau_fn=1", "lcovnet:channels=[8,16]", 'x:s="a b":t=true', 'x:s="1"',
     "x:w=1e-06", "none", 'x:s="say \\"hi\\""', "x:l=[\"a\",1.5]"],
)  # fmt: skip
def test_canonical_text_round_trips(text):
    (c,) = parse_components(text, "kd", "--kd")
    assert parse_components(str(c), "kd", "--kd") == [c]
    assert str(parse_components(str(c), "kd", "--kd")[0]) == str(c)


def test_canonical_text_sorts_keys():
    assert str(parse_component("ms:tau_fn=1:norm=global", "kd", "--kd")) == "ms:norm=global:tau_fn=1"


def test_strings_that_read_as_other_values_are_quoted():
    assert format_value("1") == '"1"'
    assert format_value("true") == '"true"'
    assert format_value("global") == "global"


def test_a_sweep_expands_into_one_component_per_value():
    (sweep,) = parse_sweeps("ca:weight=0.05|0.1|0.2", "kd", "--kd")
    assert [c.kwargs["weight"] for c in sweep.components] == [0.05, 0.1, 0.2]
    assert sweep.swept == ("ca.weight",)
    assert str(sweep) == "ca:weight=0.05|0.1|0.2"


def test_several_swept_keys_give_their_product():
    (sweep,) = parse_sweeps("ca:weight=0.1|0.2+ms:norm=global|sample:tau_fn=1", "kd", "--kd")
    assert sweep.swept == ("ca.weight", "ms.norm")
    assert [str(c) for c in sweep.components] == [
        "ca:weight=0.1+ms:norm=global:tau_fn=1", "ca:weight=0.1+ms:norm=sample:tau_fn=1",
        "ca:weight=0.2+ms:norm=global:tau_fn=1", "ca:weight=0.2+ms:norm=sample:tau_fn=1",
    ]  # fmt: skip


def test_list_values_can_be_swept():
    (sweep,) = parse_sweeps("lcovnet:channels=[8,16]|[16,32]", "model", "--models")
    assert [c.kwargs["channels"] for c in sweep.components] == [[8, 16], [16, 32]]


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("ca,,ms", "kd", "empty entry"),
        ("lcovnet+unet3d", "model", "'+' joins KD methods"),
        ("ca+ca", "kd", "appears twice"),
        ("none:weight=1", "kd", "'none' (no KD) takes no arguments"),
        ("ca:weight", "kd", "is not KEY=VALUE"),
        ("ca:weight=0.1:weight=0.2", "kd", "sets weight twice"),
        ("ca:weight=", "kd", "no value"),
        ("ca:weight=0.1|0.1", "kd", "repeats a value"),
        ("lcovnet:channels=[8,16", "model", "unclosed bracket"),
        ('x:s="abc', "kd", 'unclosed "'),
        ("x:s=a b", "kd", "is not a value"),
        ("9net", "model", "is not a name"),
    ],
)
def test_syntax_errors_name_the_argument_and_the_problem(text, kind, message):
    with pytest.raises(BenchError) as err:
        parse_components(text, kind, "--opt")
    assert str(err.value).startswith("--opt")
    assert message in str(err.value)


def test_a_teacher_is_one_component():
    assert parse_component("unet3d:base_channels=8", "model", "--teacher") == Component("unet3d", {"base_channels": 8})
    with pytest.raises(BenchError, match="takes one model"):
        parse_component("unet3d:base_channels=8|16", "model", "--teacher")


def test_misspelt_key_names_the_right_key_and_lists_valid_keys_with_defaults():
    with pytest.raises(BenchError) as err:
        resolve_components("ca:wieght=0.5", "kd", "--kd")
    message = str(err.value)
    assert message.startswith("--kd: ca: 'wieght' is not an argument; did you mean 'weight'?")
    assert "preset=pymic, weight=None, scale_weights=[0.4,0.2,0.2,0.2]" in message


def test_wrong_type_names_the_key_and_the_expected_type():
    with pytest.raises(BenchError, match=r"--kd: ms: norm must be a string, got 3 \(an integer\); ms's arguments"):
        resolve_components("ca+ms:norm=3", "kd", "--kd")
    with pytest.raises(BenchError, match="channels must be a list of integers, got"):
        resolve_components("lcovnet:channels=[8,16.5]", "model", "--models")


def test_arguments_set_by_the_benchmark_are_refused():
    with pytest.raises(BenchError, match="'num_classes' is set by the benchmark"):
        resolve_components("lcovnet:num_classes=3", "model", "--models")


def test_unknown_names_list_the_registered_ones():
    with pytest.raises(BenchError, match="--kd: unknown KD method 'cq'; registered methods: acf, at, ca"):
        resolve_components("ca+cq", "kd", "--kd")
    with pytest.raises(BenchError, match="--models: unknown model 'lcov'"):
        resolve_components("lcov:dropout=0", "model", "--models")


def test_an_int_where_a_float_is_expected_is_one_run_with_the_float():
    assert resolve_components("ca:weight=1|1.0", "kd", "--kd") == [Component("ca", {"weight": 1.0})]
    assert str(check_component(Component("nnunet", {"spacing": [3, 1, 1]}), "model", "--models")) == \
        "nnunet:spacing=[3.0,1.0,1.0]"  # fmt: skip


def test_resolved_sweeps_keep_the_swept_keys():
    (sweep,) = resolve_sweeps("nnunet:base_channels=16|32", "model", "--models")
    assert sweep.swept == ("nnunet.base_channels",)
    assert [c.kwargs for c in sweep.components] == [{"base_channels": 16}, {"base_channels": 32}]


def test_none_is_no_kd_and_takes_no_arguments():
    assert arguments("kd", "none") == []
    assert resolve_components("none,ca", "kd", "--kd") == [Component("none"), Component("ca")]


def test_docstring_args_read_meaning_and_paper_value():
    doc = """Build it.

    Args:
        weight: factor on the loss. [paper: 0.1]
            Continued here.
        tau (float): temperature.

    Returns:
        a module
    """
    assert docstring_args(doc) == {"weight": ("factor on the loss. Continued here.", "0.1"),
                                   "tau": ("temperature.", None)}  # fmt: skip


def test_resolved_sweep_text_is_canonical_after_the_values_are_typed():
    (sweep,) = resolve_sweeps("kd:weight=1|2:tau=4", "kd", "--kd")
    assert str(sweep) == "kd:tau=4.0:weight=1.0|2.0"
    (same,) = resolve_sweeps("ca:weight=1|1.0", "kd", "--kd")
    assert (same.swept, str(same)) == ((), "ca:weight=1.0")
