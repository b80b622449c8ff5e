"""Suite config: errors must name file, key path and line; overrides and sweeps are validated up front."""
from __future__ import annotations

import dataclasses
import hashlib
import textwrap
from pathlib import Path

import pytest

from tsbench.config.suite import (ConfigError, MeasureConfig, ModelConfig, QualityConfig, SuiteConfig,
                                  SweepConfig, WorkloadConfig, config_hash, get_key, load_suite, parse_override,
                                  suite_from_dict, with_overrides)
from tsbench.models import ADAPTERS
from tsbench.models.llamagen import LlamaGenOptions


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def load_error(tmp_path: Path, text: str, overrides: list[str] = ()) -> str:
    with pytest.raises(ConfigError) as info:
        load_suite(write(tmp_path, text), overrides)
    return str(info.value)


def test_defaults_and_every_field_documented() -> None:
    suite = suite_from_dict({"name": "demo"})
    # window and preset default to the model's own: the checkpoint's window, the adapter's default preset
    assert suite.model.adapter == "token-shuffle" and suite.model.window is None and suite.model.preset is None
    assert suite.workload.resolution == 256 and suite.workload.cfg_scale == 7.5 and suite.workload.prompts
    assert suite.quality.scorers == [] and suite.sweep is None and suite.output_dir == "runs"
    options = [ADAPTERS.get(name).options for name in ADAPTERS.names()]
    for cls in (ModelConfig, WorkloadConfig, MeasureConfig, QualityConfig, SweepConfig, SuiteConfig, *options):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"


def test_full_file_round_trips(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, """\
        name: demo
        model: {window: 2, dtype: bfloat16, checkpoint: w.safetensors}
        workload:
          resolution: 512
          cfg_scale: 7          # int widened to float
          cfg_interval: [0, 0.5]
          top_p: 0.9
          prompts: [a cat]
        quality: {benchmark: txt, path: p.txt, scorers: [clipscore], scorer_options: {clipscore: {model: b32}}}
        sweep:
          grid: {model.window: [1, 2]}
    """))
    assert suite.workload.cfg_scale == 7.0 and isinstance(suite.workload.cfg_scale, float)
    assert suite.workload.cfg_interval == [0.0, 0.5]
    assert suite.sweep == SweepConfig(grid={"model.window": [1, 2]})
    assert suite_from_dict(suite.to_dict()) == suite
    assert get_key(suite, "quality.scorer_options.clipscore") == {"model": "b32"}


def test_unknown_key_names_file_line_and_suggestion(tmp_path: Path) -> None:
    message = load_error(tmp_path, """\
        name: demo
        model:
          widow: 2
    """)
    assert message == f"{tmp_path / 'suite.yaml'}:3: model.widow: unknown key. Did you mean 'window'?"


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path: Path) -> None:
    message = load_error(tmp_path, "name: demo\nmeasure: {zzz: 1}\n")
    assert "measure.zzz: unknown key. Valid keys: flops, latency" in message


@pytest.mark.parametrize("text, expected", [
    ("workload:\n  resolution: big\n", ":3: workload.resolution: expected integer, got 'big' (string)"),
    ("workload:\n  resolution: 256.0\n", ":3: workload.resolution: expected integer, got 256.0 (number)"),
    ("measure:\n  flops: 1\n", ":3: measure.flops: expected boolean, got 1 (integer)"),
    ("quality:\n  version: 2\n", ":3: quality.version: expected string or null, got 2 (integer)"),
    ("workload:\n  prompts: [a, 3]\n", ":3: workload.prompts[1]: expected string, got 3 (integer)"),
    ("model: 3\n", ":2: model: expected a mapping of ModelConfig keys, got 3 (integer)"),
])
def test_wrong_type_reports_expected_type(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in load_error(tmp_path, "name: demo\n" + text)


@pytest.mark.parametrize("text, expected", [
    ("workload: {resolution: -1}", "workload.resolution: must be a positive integer, got -1"),
    ("workload: {batch_size: 0}", "workload.batch_size: must be an integer >= 1, got 0"),
    ("workload: {top_p: 1.5}", "workload.top_p: must be in (0, 1] or null, got 1.5"),
    ("workload: {top_p: 0}", "workload.top_p: must be in (0, 1] or null, got 0.0"),
    ("workload: {temperature: 0}", "workload.temperature: must be > 0, got 0.0"),
    ("workload: {cfg_interval: [0.5]}", "workload.cfg_interval: must be [start, end]"),
    ("model: {dtype: float61}", "model.dtype: must be one of float32, bfloat16, float16, got 'float61'. "
                                "Did you mean 'float16'"),
    ("model: {window: 0}", "model.window: must be an integer >= 1 or null, got 0"),
    ("quality: {benchmark: genai}", "quality.benchmark: unknown benchmark 'genai'. Did you mean"),
    ("quality: {benchmark: jsonl}", "quality.path: is required when benchmark is 'jsonl'"),
    ("quality: {benchmark: genai-bench, version: '600'}", "quality.version: GenAI-Bench has no version '600'; "
                                                          "choose one of 527, 1600 (default 1600)"),
    ("quality: {benchmark: geneval, path: p.txt}", "quality.path: GenEval reads its own prompts"),
    ("quality: {scorers: [shapes-orcle]}", "quality.scorers[0]: unknown scorer 'shapes-orcle'. Did you mean "
                                           "'shapes-oracle'?"),
    ("quality: {scorer_options: {clip: {}}}", "quality.scorer_options.clip: unknown scorer 'clip'. Did you mean "
                                              "'clipscore'?"),
    ("quality: {bootstrap_resamples: -1}", "quality.bootstrap_resamples: must be >= 0"),
])
def test_bad_value_reports_line_value_and_expectation(tmp_path: Path, text: str, expected: str) -> None:
    message = load_error(tmp_path, "name: demo\n" + text + "\n")
    assert f"suite.yaml:2: {expected}" in message


def test_structural_errors(tmp_path: Path) -> None:
    assert "name: missing required key" in load_error(tmp_path, "model: {window: 2}\n")
    assert "suite.yaml: expected a mapping" in load_error(tmp_path, "- a\n")
    assert "suite.yaml: expected a mapping" in load_error(tmp_path, "")
    assert "invalid YAML" in load_error(tmp_path, "name: [demo\n")
    assert ":3: model.window: duplicate key (first set on line 2)" in load_error(
        tmp_path, "model:\n  window: 1\n  window: 2\nname: demo\n")
    with pytest.raises(ConfigError, match="cannot read suite file"):
        load_suite(tmp_path / "missing.yaml")


def test_overrides_are_parsed_as_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "name: demo\nmodel: {checkpoint: w.safetensors}\n")
    suite = load_suite(path, ["workload.resolution=512", "model.checkpoint=null", "workload.prompts=[a, b]",
                              "sweep.grid.model.window=[1, 2]", "description=x=y", "measure.flops=false"])
    assert suite.workload.resolution == 512 and suite.model.checkpoint is None
    assert suite.workload.prompts == ["a", "b"] and suite.description == "x=y"
    assert suite.sweep.grid == {"model.window": [1, 2]}
    assert suite.measure.flops is False  # a falsy override still overrides
    assert parse_override("workload.cfg_scale = 3") == ("workload.cfg_scale", 3)


def test_override_errors_cite_the_override(tmp_path: Path) -> None:
    path = write(tmp_path, "name: demo\nworkload:\n  resolution: 256\n")
    with pytest.raises(ConfigError, match=r"^--set model\.widow=2: unknown config key 'model\.widow'\. "
                                          r"Did you mean 'model\.window'"):
        load_suite(path, ["model.widow=2"])
    with pytest.raises(ConfigError, match=r"^--set workload\.resolution=big: workload\.resolution: expected integer"):
        load_suite(path, ["workload.resolution=big"])
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        load_suite(path, ["workload.resolution"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_suite(path, ["workload.prompts=[a"])
    with pytest.raises(ConfigError, match="'model' is 3"):
        suite_from_dict({"name": "demo", "model": 3}, overrides=["model.window=2"])


def test_sweep_keys_and_values_are_validated_with_lines(tmp_path: Path) -> None:
    message = load_error(tmp_path, """\
        name: demo
        sweep:
          grid:
            model.widow: [1, 2]
    """)
    assert ":4: sweep.grid.model.widow: unknown config key 'model.widow'. Did you mean 'model.window'" in message

    message = load_error(tmp_path, """\
        name: demo
        sweep:
          grid:
            model.window:
              - 1
              - 0
    """)
    assert message.startswith(f"{tmp_path / 'suite.yaml'}:6 (sweep.grid.model.window[1]): model.window: "
                              "must be an integer >= 1 or null, got 0")

    assert "expected integer, got 'big'" in load_error(
        tmp_path, "name: d\nsweep:\n  zip: {workload.resolution: [256, big]}\n")
    assert "sweep keys must start with one of model" in load_error(
        tmp_path, "name: d\nsweep:\n  grid: {output_dir: [a, b]}\n")
    assert "must name a single field" in load_error(tmp_path, "name: d\nsweep:\n  grid: {model: [{}]}\n")
    assert "must be a non-empty list" in load_error(tmp_path, "name: d\nsweep:\n  grid: {model.window: []}\n")
    assert "sweep.zip: lists must have equal lengths" in load_error(
        tmp_path, "name: d\nsweep:\n  zip: {model.window: [1, 2], workload.seed: [1]}\n")
    assert "is also in grid" in load_error(
        tmp_path, "name: d\nsweep:\n  grid: {model.window: [1]}\n  zip: {model.window: [2]}\n")
    assert "sweep.order[0]: unknown config key 'model.widow'" in load_error(
        tmp_path, "name: d\nsweep:\n  order: [-model.widow]\n")


def test_sweep_zip_allows_values_only_valid_together(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, """\
        name: demo
        quality: {benchmark: txt, path: a.txt}
        sweep:
          zip: {quality.benchmark: [txt, geneval], quality.path: [a.txt, null]}
    """))
    assert suite.sweep.combinations() == [{"quality.benchmark": "txt", "quality.path": "a.txt"},
                                          {"quality.benchmark": "geneval", "quality.path": None}]


def test_direct_construction_validates() -> None:
    with pytest.raises(ValueError, match="top_p"):
        WorkloadConfig(top_p=2.0)
    assert issubclass(ConfigError, ValueError)


def test_config_hash_is_stable_and_canonical() -> None:
    a = {"model": {"window": 2, "dtype": "float32"}, "workload": {"resolution": 256}}
    b = {"workload": {"resolution": 256}, "model": {"dtype": "float32", "window": 2}}
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 12 and int(config_hash(a), 16) >= 0
    assert config_hash(a) != config_hash({**a, "model": {"window": 4, "dtype": "float32"}})
    # pinned to the documented recipe: changing it would invalidate every stored result on resume
    assert config_hash({"x": 1}) == hashlib.sha256(b'{"x":1}').hexdigest()[:12]


# ---- adapter options -------------------------------------------------------------------------------
def test_options_are_built_into_the_adapters_own_class(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, """\
        name: demo
        model:
          adapter: llamagen
          options: {vq_checkpoint: vq.pt, allow_pickled_args: true}
    """))
    assert suite.model.options == LlamaGenOptions(vq_checkpoint="vq.pt", allow_pickled_args=True)
    assert get_key(suite, "model.options.vq_checkpoint") == "vq.pt"
    assert suite.to_dict()["model"]["options"] == {"vq_checkpoint": "vq.pt", "allow_pickled_args": True}
    assert suite_from_dict(suite.to_dict()) == suite


def test_unknown_option_names_file_line_and_suggestion(tmp_path: Path) -> None:
    message = load_error(tmp_path, """\
        name: demo
        model:
          adapter: llamagen
          options:
            vq_chekpoint: vq.pt
    """)
    assert message == (f"{tmp_path / 'suite.yaml'}:5: model.options.vq_chekpoint: unknown key. "
                       "Did you mean 'vq_checkpoint'? (options of adapter 'llamagen')")


def test_option_written_one_level_too_high_says_where_it_belongs(tmp_path: Path) -> None:
    message = load_error(tmp_path, "name: demo\nmodel:\n  adapter: llamagen\n  text_encoder: t5\n")
    assert ":4: model.text_encoder: unknown key. 'text_encoder' is an option of adapter 'llamagen': write it " \
           "under model.options.text_encoder" in message


def test_option_checks_and_unknown_adapters_fail_at_load(tmp_path: Path) -> None:
    message = load_error(tmp_path, "name: d\nmodel:\n  adapter: llamagen\n  options:\n"
                                   "    text_encoder: t5\n    text_embeddings: e.safetensors\n")
    assert "model.options.text_embeddings: give either text_encoder or text_embeddings, not both" in message
    message = load_error(tmp_path, "name: d\nmodel:\n  adapter: llamagenn\n")
    assert ":3: model.adapter: unknown adapter 'llamagenn'. Did you mean 'llamagen'" in message
    assert "expected boolean, got 'yes' (string)" in load_error(
        tmp_path, "name: d\nmodel: {adapter: llamagen, options: {allow_pickled_args: 'yes'}}\n")


def test_options_of_one_adapter_do_not_leak_into_a_swept_other(tmp_path: Path) -> None:
    """A sweep cell switching adapters keeps the base options that differ from defaults, and only those:
    an option the other adapter lacks is an error at load, not silently dropped."""
    suite = load_suite(write(tmp_path, """\
        name: demo
        model: {adapter: llamagen, options: {vq_checkpoint: vq.pt}}
        sweep:
          zip: {model.adapter: [llamagen, llamagen-ts], model.window: [1, 2]}
    """))
    cell = with_overrides(suite, {"model.adapter": "token-shuffle", "model.options": {}})
    assert cell.model.options == ADAPTERS.get("token-shuffle").options()
    message = load_error(tmp_path, """\
        name: demo
        model: {adapter: llamagen, options: {text_encoder: t5}}
        sweep:
          grid: {model.adapter: [llamagen, token-shuffle]}
    """)
    assert "model.options.text_encoder: unknown key" in message and "(options of adapter 'token-shuffle')" in message


def test_options_are_checked_against_each_swept_adapter(tmp_path: Path) -> None:
    """With model.adapter swept, the base adapter never runs: options are checked per cell's adapter."""
    path = tmp_path / "s.yaml"
    path.write_text("name: demo\nmodel: {options: {text_encoder: t5}}\n"
                    "sweep:\n  zip:\n    model.adapter: [llamagen, llamagen-ts]\n    model.window: [1, 2]\n")
    suite = load_suite(path)
    assert suite.model.adapter == "llamagen" and suite.model.options.text_encoder == "t5"
    path.write_text("name: demo\nmodel: {options: {text_encoder: t5}}\n"
                    "sweep:\n  grid:\n    model.adapter: [llamagen, token-shuffle]\n")
    with pytest.raises(ConfigError, match=r"s.yaml:2: model.options.text_encoder: unknown key.*"
                                          r"options of adapter 'token-shuffle'.*in sweep cell"):
        load_suite(path)
