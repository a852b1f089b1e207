"""SGLang flag tables: the generator (on small wheels built here in SGLang's real declaration
styles, so no network), the committed tables, value validation and moving a recipe between versions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile

import pytest

from infra.control import sglang_flags
from infra.control.resolve import resolve
from infra.control.settings import load_settings
from infra.runtime import sglang_args
from infra.runtime.errors import ConfigError, StageError
from infra.runtime.recipes import RECIPES
from tests.conftest import REPO, deployment
from tools import sglang_tables

# ---------------------------------------------------------------------------
# Synthetic wheels
# ---------------------------------------------------------------------------

# Up to 0.5.11: add_argument calls in ServerArgs.add_cli_args, choices from constants of this module,
# of another module of the wheel and of a class attribute; SGLang's Deprecated*Action classes.
OLD_STYLE = {
    "sglang/__init__.py": "",
    "sglang/srt/layers/backends.py": """
        ATTENTION_BACKEND_CHOICES = [
            # Common
            "triton",
            "fa3",
        ]
        EXTRA = ["flashinfer"]
    """,
    "sglang/srt/parser/reasoning_parser.py": """
        class Qwen3Detector: ...

        class ReasoningParser:
            DetectorMap: Dict[str, Type] = {"qwen3": Qwen3Detector, "deepseek-r1": Qwen3Detector}
    """,
    "sglang/srt/utils/common.py": """
        SUPPORTED_LORA_TARGET_MODULES = ["q_proj", "k_proj"]
        LORA_TARGET_ALL_MODULES = "all"

        def human_readable_int(value): ...
    """,
    "sglang/srt/server_args.py": """
        import argparse
        import dataclasses
        import json

        from sglang.srt.layers.backends import ATTENTION_BACKEND_CHOICES, EXTRA as MORE
        from sglang.srt.parser.reasoning_parser import ReasoningParser
        from sglang.srt.utils.common import (
            LORA_TARGET_ALL_MODULES,
            SUPPORTED_LORA_TARGET_MODULES,
            human_readable_int,
        )

        SAMPLING_BACKEND_CHOICES = {"pytorch", "flashinfer"}

        @dataclasses.dataclass
        class ServerArgs:
            model_path: str
            tp_size: int = 1
            kv_cache_dtype: str = "auto"
            schedule_policy: str = "fcfs"
            lora_paths: Optional[list] = dataclasses.field(default_factory=list)

            @staticmethod
            def add_cli_args(parser: argparse.ArgumentParser):
                parser.add_argument("--model-path", "--model", type=str, required=True, help="The model.")
                parser.add_argument(
                    "--tensor-parallel-size", "--tp-size", type=int, default=ServerArgs.tp_size, help="TP."
                )
                parser.add_argument("--enable-metrics", action="store_true", help="Metrics.")
                parser.add_argument("--context-length", type=human_readable_int, help="Context.")
                parser.add_argument("--mem-fraction-static", type=float, help="Memory.")
                parser.add_argument("--json-model-override-args", type=json.loads, default="{}")
                parser.add_argument(
                    "--attention-backend", type=str, choices=ATTENTION_BACKEND_CHOICES + MORE, help="Attention."
                )
                parser.add_argument("--sampling-backend", type=str, choices=SAMPLING_BACKEND_CHOICES)
                parser.add_argument("--reasoning-parser", type=str, choices=list(ReasoningParser.DetectorMap.keys()))
                schedule_choices = ["lpm", "fcfs"]
                parser.add_argument("--schedule-policy", type=str, choices=schedule_choices,
                                    default=ServerArgs.schedule_policy)
                parser.add_argument(
                    "--lora-target-modules", type=str, nargs="*",
                    choices=SUPPORTED_LORA_TARGET_MODULES + [LORA_TARGET_ALL_MODULES],
                )
                parser.add_argument("--cuda-graph-bs", type=int, nargs="+")
                parser.add_argument(
                    "--kv-cache-dtype", choices=[m.lower() for m in MODES], default=ServerArgs.kv_cache_dtype
                )
                parser.add_argument("--lora-paths", nargs="*", action=LoRAPathAction, default=ServerArgs.lora_paths)
                parser.add_argument("--record-nolora-graph", action=argparse.BooleanOptionalAction, default=True)
                parser.add_argument(
                    "--hybrid-kvcache-ratio",
                    action=DeprecatedAction,
                    help="Note: --hybrid-kvcache-ratio is deprecated now. Please use --swa-full-tokens-ratio instead.",
                )
                parser.add_argument("--swa-full-tokens-ratio", type=float, default=0.8)
                parser.add_argument(
                    "--stream-output",
                    action=DeprecatedStoreTrueAction,
                    dest="incremental_streaming_output",
                    new_flag="--incremental-streaming-output",
                    help="[Deprecated] Use --incremental-streaming-output instead.",
                )
                parser.add_argument("--incremental-streaming-output", action="store_true")
                parser.add_argument(
                    "--enable-nan-detection", action="store_true",
                    help="[Deprecated] Use SGLANG_SPEC_NAN_DETECTION=1 instead.",
                )
                parser.add_argument(
                    "--radix-cache-backend", type=str,
                    help="The radix tree. The fallback to --other-flag for linkers is deprecated; it still works.",
                )

        class LoRAPathAction(argparse.Action):
            def __call__(self, parser, namespace, values, option_string=None): ...

        class DeprecatedAction(argparse.Action):
            def __init__(self, option_strings, dest, nargs=0, **kwargs):
                super().__init__(option_strings, dest, nargs=nargs, **kwargs)

        class DeprecatedStoreTrueAction(argparse.Action):
            def __init__(self, option_strings, dest, new_flag=None, nargs=0, const=True, default=False, **kwargs):
                super().__init__(option_strings, dest, nargs=nargs, const=const, default=default, **kwargs)
    """,
    "sglang/srt/entrypoints/http_server.py": """
        import os
        app = FastAPI()

        @app.get("/health")
        @app.get("/health_generate")
        async def health(): ...

        @app.api_route("/release_memory_occupation", methods=["GET", "POST"])
        async def release(): ...

        @app.post(os.environ.get("AIP_PREDICT_ROUTE", "/vertex_generate"))
        async def vertex(): ...

        app.add_api_route("/v1/models", models, methods=["GET"])
    """,
    "sglang/compile_deep_gemm.py": """
        import argparse
        import dataclasses
        from sglang.srt.server_args import ServerArgs

        @dataclasses.dataclass
        class CompileArgs:
            timeout: int = 3600

            @staticmethod
            def add_cli_args(parser):
                parser.add_argument("--timeout", type=int, default=CompileArgs.timeout)

        if __name__ == "__main__":
            parser = argparse.ArgumentParser()
            ServerArgs.add_cli_args(parser)
            CompileArgs.add_cli_args(parser)
    """,
}

# 0.5.12 and later: annotated fields of namespace Structs, collected into a ServerArgs that is then
# rebuilt with msgspec.defstruct, plus manual registrations for dynamic choices and deprecated spellings.
NEW_STYLE = {
    "sglang/__init__.py": "",
    "sglang/srt/arg_groups/arg_utils.py": """
        A = Annotated

        class Arg(msgspec.Struct, frozen=True):
            help: str = ""
    """,
    "sglang/srt/arg_groups/choices.py": """
        ATTENTION_BACKEND_CHOICES = ["triton", "dsa"]
    """,
    "sglang/srt/arg_groups/argparse_actions.py": """
        import argparse

        class DeprecatedStoreTrueAction(argparse.Action):
            def __init__(self, option_strings, dest, new_flag=None, nargs=0, const=True, default=False, **kwargs):
                super().__init__(option_strings, dest, nargs=nargs, const=const, default=default, **kwargs)

        class DeprecatedStoreConstAction(argparse.Action):
            def __init__(self, option_strings, dest, new_flag=None, const_value=None, nargs=0, default=None, **kw):
                super().__init__(option_strings, dest, nargs=nargs, default=default, **kw)

        class DeprecatedAliasStoreAction(argparse.Action):
            def __init__(self, option_strings, dest, new_flag=None, **kwargs):
                super().__init__(option_strings, dest, **kwargs)
    """,
    "sglang/srt/model_executor/cuda_graph_config.py": """
        class Backend:
            FULL = "full"
            BREAKABLE = "breakable"
            ALL = (FULL, BREAKABLE)

        def parse_backend(raw): return raw
    """,
    "sglang/srt/parser/parser_names.py": """
        REASONING_PARSER_NAMES = ("qwen3", "deepseek-r1")
    """,
    "sglang/srt/arg_groups/fields/graph.py": """
        import argparse
        from typing import List, Literal, Optional

        import msgspec

        from sglang.srt.arg_groups.arg_utils import A, Arg
        from sglang.srt.arg_groups.argparse_actions import DeprecatedAliasStoreAction
        from sglang.srt.arg_groups.choices import ATTENTION_BACKEND_CHOICES
        from sglang.srt.model_executor.cuda_graph_config import Backend, parse_backend

        class Graph(msgspec.Struct):
            _NS_PATH = "exec.graph"
            cuda_graph_max_bs_decode: A[Optional[int], "Largest decode batch captured."] = None
            cuda_graph_bs_decode: A[Optional[List[int]], "Decode batch sizes."] = None
            cuda_graph_backend_decode: A[
                Optional[Literal["full", "breakable"]],
                Arg(help="Decode backend.", choices=Backend.ALL, type_parser=parse_backend),
            ] = None
            disable_cuda_graph: A[bool, Arg(no_cli=True)] = False
            enable_profile_cuda_graph: A[bool, "Profile capture."] = False
            enable_tf32_matmul: A[Optional[bool], Arg(help="TF32.", action=argparse.BooleanOptionalAction)] = None
            attention_backend: A[str | None, Arg(help="Attention.", choices=ATTENTION_BACKEND_CHOICES)] = None
            piecewise_cuda_graph_tokens: A[
                Optional[List[int]],
                Arg(help="Deprecated alias for --cuda-graph-bs-prefill.", action=DeprecatedAliasStoreAction,
                    action_kwargs={"new_flag": "--cuda-graph-bs-decode", "nargs": "+"}),
            ] = None
            unused_field: int = 3
    """,
    "sglang/srt/arg_groups/fields/model.py": """
        import msgspec
        from sglang.srt.arg_groups.arg_utils import A, Arg

        class Base(msgspec.Struct):
            trust_remote_code: A[bool, "Allow custom code."] = False

        class Model(Base):
            _NS_PATH = "model"
            model_path: A[str, Arg(help="The model.", aliases=["--model"])]
            tp_size: A[int, Arg(help="TP.", cli_name="--tp-size", aliases=["--tensor-parallel-size"])] = 1
            context_length: A[Optional[int], Arg(help="Context.", type_parser=human_readable_int)] = None
            dtype: A[Literal["auto", "half"], "The dtype."] = "auto"
            sampling_backend: A[Optional[str], Arg(help="Sampling.", no_cli=True)] = None
    """,
    "sglang/srt/server_args.py": """
        import argparse
        import sys

        from sglang.srt.arg_groups.arg_utils import add_cli_args_from_dataclass
        from sglang.srt.arg_groups.argparse_actions import DeprecatedStoreConstAction, DeprecatedStoreTrueAction
        from sglang.srt.arg_groups.fields import collect_input_fields
        from sglang.srt.arg_groups.fields.graph import Graph
        from sglang.srt.arg_groups.fields.model import Model

        def _reasoning_parser_choices():
            module = sys.modules.get("sglang.srt.parser.reasoning_parser")
            if module is not None:
                return list(module.ReasoningParser.DetectorMap)
            from sglang.srt.parser.parser_names import REASONING_PARSER_NAMES

            return list(REASONING_PARSER_NAMES)

        class ServerArgs:
            @staticmethod
            def add_cli_args(parser: argparse.ArgumentParser):
                add_cli_args_from_dataclass(parser, ServerArgs)
                reasoning_parser_choices = _reasoning_parser_choices()
                parser.add_argument(
                    "--reasoning-parser", type=str, choices=["auto"] + reasoning_parser_choices,
                    default=_declared_default("dtype"),
                )
                parser.add_argument(
                    "--disable-cuda-graph",
                    action=DeprecatedStoreTrueAction,
                    new_flag="--cuda-graph-backend-{decode,prefill}=disabled",
                    help="Deprecated. Use --cuda-graph-backend-{decode,prefill}=disabled instead.",
                )
                parser.add_argument(
                    "--monokernel-backend",
                    action=DeprecatedStoreConstAction,
                    dest="enable_amd_monokernel",
                    nargs=None,
                    choices=["amd"],
                    new_flag="--enable-amd-monokernel",
                    help="Deprecated. Use --enable-amd-monokernel instead of --monokernel-backend amd.",
                )

        _INPUT_NAMESPACES = [Model, Graph]
        _annotations, _defaults, _namespaces = collect_input_fields(_INPUT_NAMESPACES)
        ServerArgs = msgspec.defstruct("ServerArgs", [], namespace=dict(vars(ServerArgs)))
    """,
    "sglang/srt/entrypoints/http_server.py": """
        @app.get("/health")
        async def health(): ...
    """,
}


def build_wheel(directory, version: str, files: dict[str, str], tag: str = "py3-none-any"):
    """A wheel pip accepts: the sources, and a dist-info naming the distribution."""
    path = directory / f"sglang-{version}-{tag}.whl"
    info = f"sglang-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, textwrap.dedent(text).lstrip())
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: sglang\nVersion: {version}\n")
        z.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n")
        z.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def old_style(tmp_path):
    return sglang_tables.table_from_wheel(build_wheel(tmp_path, "0.5.9", OLD_STYLE))


@pytest.fixture
def new_style(tmp_path):
    return sglang_tables.table_from_wheel(build_wheel(tmp_path, "0.5.99", NEW_STYLE))


def test_add_argument_style_types_choices_defaults_and_aliases(old_style):
    flags = old_style["flags"]
    assert flags["--model-path"] == {"required": True, "type": "str"}
    assert flags["--model"] == {"alias_of": "--model-path"}
    assert flags["--tensor-parallel-size"] == {"default": 1, "type": "int"}  # default=ServerArgs.tp_size
    assert flags["--tp-size"] == {"alias_of": "--tensor-parallel-size"}
    assert flags["--enable-metrics"] == {"switch": True}
    assert flags["--context-length"] == {"type": "human_readable_int"}
    assert flags["--json-model-override-args"] == {"default": "{}", "type": "json.loads"}
    # Choices: a constant imported from another module plus an aliased import, a set, a class
    # attribute's dict keys, a local variable, a concatenation of imported names.
    assert flags["--attention-backend"]["choices"] == ["triton", "fa3", "flashinfer"]
    assert flags["--sampling-backend"]["choices"] == ["flashinfer", "pytorch"]
    assert flags["--reasoning-parser"]["choices"] == ["qwen3", "deepseek-r1"]
    assert flags["--schedule-policy"] == {"choices": ["lpm", "fcfs"], "default": "fcfs", "type": "str"}
    assert flags["--lora-target-modules"] == {"choices": ["q_proj", "k_proj", "all"], "nargs": "*", "type": "str"}
    assert flags["--cuda-graph-bs"] == {"nargs": "+", "type": "int"}
    # What only SGLang can compute is said so, not guessed; a default_factory is no static default.
    assert flags["--kv-cache-dtype"] == {"choices_unresolved": "[m.lower() for m in MODES]", "default": "auto"}
    assert flags["--lora-paths"] == {"nargs": "*"}  # a custom Action without nargs=0 takes values
    assert flags["--record-nolora-graph"] == {"default": True, "switch": True}
    assert flags["--no-record-nolora-graph"] == {"negates": "--record-nolora-graph", "switch": True}


def test_add_argument_style_deprecations(old_style):
    flags = old_style["flags"]
    # DeprecatedAction: no value (its __init__ defaults nargs to 0), and SGLang drops it.
    assert flags["--hybrid-kvcache-ratio"] == {
        "deprecated": "Note: --hybrid-kvcache-ratio is deprecated now. Please use --swa-full-tokens-ratio instead.",
        "ignored": True,
        "replaced_by": ["--swa-full-tokens-ratio"],
        "switch": True,
    }
    # DeprecatedStoreTrueAction: still works, stores to its successor's dest, names it.
    assert flags["--stream-output"] == {
        "deprecated": "[Deprecated] Use --incremental-streaming-output instead.",
        "dest": "incremental_streaming_output",
        "replaced_by": ["--incremental-streaming-output"],
        "switch": True,
    }
    # Deprecated by its help text alone, with no flag to move to.
    assert flags["--enable-nan-detection"] == {
        "deprecated": "[Deprecated] Use SGLANG_SPEC_NAN_DETECTION=1 instead.", "switch": True,
    }
    # A help text that mentions deprecation of something else is not a deprecated flag.
    assert "deprecated" not in flags["--radix-cache-backend"]


def test_endpoints_and_compile_deep_gemm_flags(old_style):
    assert old_style["endpoints"] == ["/health", "/health_generate", "/release_memory_occupation", "/v1/models"]
    assert old_style["compile_deep_gemm_extra_flags"] == {"--timeout": {"default": 3600, "type": "int"}}
    assert old_style["wheel"] == "sglang-0.5.9-py3-none-any.whl" and len(old_style["sha256"]) == 64


def test_namespace_field_style(new_style):
    flags = new_style["flags"]
    assert flags["--model-path"] == {"required": True, "type": "str"}  # no default: required
    assert flags["--model"] == {"alias_of": "--model-path"}
    assert flags["--trust-remote-code"] == {"switch": True}  # from the namespace's base class
    assert flags["--tp-size"] == {"default": 1, "type": "int"}
    assert flags["--tensor-parallel-size"] == {"alias_of": "--tp-size"}
    assert flags["--context-length"] == {"type": "human_readable_int"}
    assert flags["--dtype"] == {"choices": ["auto", "half"], "default": "auto", "type": "str"}  # from Literal
    assert flags["--cuda-graph-max-bs-decode"] == {"type": "int"}
    assert flags["--cuda-graph-bs-decode"] == {"nargs": "+", "type": "int"}  # List[int]
    # choices= a class attribute built from names in the class body, beside a type_parser.
    assert flags["--cuda-graph-backend-decode"] == {"choices": ["full", "breakable"], "type": "parse_backend"}
    assert flags["--attention-backend"] == {"choices": ["triton", "dsa"], "type": "str"}  # `str | None`
    assert flags["--enable-tf32-matmul"] == {"switch": True}
    assert flags["--no-enable-tf32-matmul"] == {"negates": "--enable-tf32-matmul", "switch": True}
    assert flags["--piecewise-cuda-graph-tokens"] == {
        "deprecated": "Deprecated alias for --cuda-graph-bs-prefill.",
        "nargs": "+",
        "replaced_by": ["--cuda-graph-bs-decode"],  # SGLang's new_flag wins over the help text
    }
    for hidden in ("--sampling-backend", "--unused-field"):
        assert hidden not in flags  # no_cli, or not annotated for the command line


def test_namespace_style_manual_registrations(new_style):
    flags = new_style["flags"]
    # choices from a helper whose last statement returns a name imported inside it; default from a field.
    assert flags["--reasoning-parser"] == {"choices": ["auto", "qwen3", "deepseek-r1"], "default": "auto",
                                           "type": "str"}
    assert flags["--disable-cuda-graph"] == {
        "deprecated": "Deprecated. Use --cuda-graph-backend-{decode,prefill}=disabled instead.",
        "replaced_by": ["--cuda-graph-backend-decode"],  # the brace's other flag does not exist here
        "switch": True,
    }
    # nargs=None on a Deprecated*Action whose __init__ defaults nargs to 0: it takes a value.
    assert flags["--monokernel-backend"]["choices"] == ["amd"] and "switch" not in flags["--monokernel-backend"]
    assert flags["--monokernel-backend"]["dest"] == "enable_amd_monokernel"
    assert new_style["compile_deep_gemm_extra_flags"] == {}


def test_expand_flags_reads_sglang_replacement_texts():
    assert sglang_tables.expand_flags("Use --cuda-graph-backend-{decode,prefill}=disabled instead.") == [
        "--cuda-graph-backend-decode", "--cuda-graph-backend-prefill",
    ]
    assert sglang_tables.expand_flags("--attn-dp-size <dp-size> instead of "
                                      "--dp-size") == ["--attn-dp-size", "--dp-size"]


def test_update_writes_one_version_and_keeps_the_others(tmp_path):
    path = tmp_path / "versions.json"
    path.write_text(json.dumps({"_source": "old", "versions": {"0.1": {"flags": {}, "endpoints": []}}}))
    version, table = sglang_tables.update(path, wheel=build_wheel(tmp_path, "0.5.9", OLD_STYLE))
    text = path.read_text()
    doc = json.loads(text)
    assert version == "0.5.9" and doc["versions"]["0.5.9"] == table and doc["versions"]["0.1"]["flags"] == {}
    assert doc["_source"] == sglang_tables.SOURCE_NOTE
    row = '    "--attention-backend": {"choices": ["triton", "fa3", "flashinfer"], "type": "str"},'
    assert row in text.splitlines()
    with pytest.raises(ConfigError, match=r"^--version 0.5.8 does not match --wheel sglang-0.5.9-py3-none-any.whl"):
        sglang_tables.update(path, "0.5.8", tmp_path / "sglang-0.5.9-py3-none-any.whl")


def test_download_wheel_runs_pip_download(tmp_path, monkeypatch):
    """The real `pip download --no-deps` subprocess, pointed at a local folder instead of PyPI."""
    index = tmp_path / "index"
    index.mkdir()
    build_wheel(index, "0.5.9", OLD_STYLE)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    (tmp_path / "out").mkdir()
    wheel = sglang_tables.download_wheel("0.5.9", tmp_path / "out")
    assert wheel.name == "sglang-0.5.9-py3-none-any.whl" and wheel.parent == tmp_path / "out"
    with pytest.raises(StageError, match=r"^sglang-flags failed: pip download sglang==0.5.7: "):
        sglang_tables.download_wheel("0.5.7", tmp_path / "out")


def test_invoke_task_without_a_version_is_one_line_and_writes_nothing():
    before = sglang_flags.TABLE_PATH.read_text()
    done = subprocess.run([sys.executable, "-m", "invoke", "sglang-flags"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: sglang-flags: give --version X (downloaded from PyPI), --wheel PATH, "
                                   "or --env ENV")
    assert sglang_flags.TABLE_PATH.read_text() == before


# ---------------------------------------------------------------------------
# The committed tables
# ---------------------------------------------------------------------------

REQUIRED_VERSIONS = ["0.5.6.post2", "0.5.10.post1", "0.5.11", "0.5.23"]


def test_committed_tables_cover_the_versions_and_are_generated_layout():
    versions = sglang_flags.supported_versions()
    assert set(REQUIRED_VERSIONS) <= set(versions)
    assert versions == sorted(versions, key=sglang_flags.version_key)
    assert versions.index("0.5.6.post2") < versions.index("0.5.10.post1") < versions.index("0.5.11")
    text = sglang_flags.TABLE_PATH.read_text()
    assert sglang_tables.render(json.loads(text)) == text  # written by the generator, not by hand
    for version in versions:
        table = sglang_flags._versions()[version]
        assert sglang_tables.version_of_wheel(table["wheel"]) == version and len(table["sha256"]) == 64
        for flag, entry in table["flags"].items():
            assert flag.startswith("--")
            assert "alias_of" not in entry or entry["alias_of"] in table["flags"]


def test_committed_counts():
    counts = {v: len(sglang_flags.known_flags(v)) for v in REQUIRED_VERSIONS}
    assert counts == {"0.5.6.post2": 300, "0.5.10.post1": 365, "0.5.11": 387, "0.5.23": 559}
    attention = sglang_flags.flag_spec("0.5.11", "--attention-backend")
    assert {"fa3", "flashinfer", "triton"} <= set(attention["choices"])
    assert sglang_flags.flag_spec("0.5.11", "--tp-size") == {"default": 1, "type": "int"}  # through the alias
    assert sglang_flags.has_endpoint("0.5.23", "/resume_memory_occupation")


@pytest.mark.parametrize("env", ["dev", "prod"])
@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("snapshot", [False, True])
def test_every_recipe_flag_and_value_is_valid_for_its_version(env, recipe, snapshot):
    d = deployment(env, recipe, gpu_snapshot=snapshot)
    sglang_flags.check_flags(d)
    flags = sglang_flags._versions()[d.recipe.sglang_version]["flags"]
    pairs = sglang_args.flag_values(sglang_args.launch_command(d)[3:])
    assert pairs and all(flag in flags for flag, _ in pairs)
    assert sglang_flags.deprecation_warnings(d) == []


def test_diff_0_5_10_post1_to_0_5_11():
    diff = sglang_flags.diff_versions("0.5.10.post1", "0.5.11")
    assert diff.removed == (
        "--ds-channel-config-path", "--ds-heavy-channel-num", "--ds-heavy-channel-type", "--ds-heavy-token-num",
        "--ds-sparse-decode-threshold", "--enable-double-sparsity", "--multi-item-scoring-delimiter",
    )
    # 30 by argparse's own count, which includes --help; the tables list SGLang's flags only.
    assert len(diff.added) == 29 and "--tokenizer-backend" in diff.added and "--no-lora-strict-loading" in diff.added
    assert diff.renamed == {}


def test_diff_0_5_11_to_0_5_23_names_the_cuda_graph_renames():
    diff = sglang_flags.diff_versions("0.5.11", "0.5.23")
    assert diff.renamed["--cuda-graph-max-bs"] == ("--cuda-graph-max-bs-decode",)
    assert diff.renamed["--cuda-graph-bs"] == ("--cuda-graph-bs-decode",)
    assert diff.renamed["--piecewise-cuda-graph-max-tokens"] == ("--cuda-graph-max-bs-prefill",)
    assert diff.renamed["--mamba-scheduler-strategy"] == ("--mamba-radix-cache-strategy",)
    assert diff.renamed["--stream-output"] == ("--incremental-streaming-output",)
    assert "--torchao-config" in diff.removed and "--cuda-graph-max-bs" not in diff.removed
    assert "--cuda-graph-max-bs-decode" not in diff.added and "--kv-canary" in diff.added
    assert (len(diff.removed), len(diff.added), len(diff.renamed)) == (9, 189, 22)
    back = sglang_flags.diff_versions("0.5.23", "0.5.11")
    assert back.renamed["--cuda-graph-max-bs-decode"] == ("--cuda-graph-max-bs",)


# ---------------------------------------------------------------------------
# check_flags at resolve time: one line naming recipe, flag, value and what is allowed
# ---------------------------------------------------------------------------


def resolve_with(monkeypatch, recipe: str, **changes):
    monkeypatch.setitem(RECIPES, recipe, RECIPES[recipe].model_copy(update=dict(**changes)))
    return resolve(load_settings("dev"), recipe)


def error_of(monkeypatch, recipe: str, **changes) -> str:
    with pytest.raises(ConfigError) as err:
        resolve_with(monkeypatch, recipe, **changes)
    message = str(err.value)
    assert "\n" not in message, "errors are one line"
    return message


VLM = "qwen3.6-35b-vlm"  # SGLang 0.5.10.post1
LOW = "qwen3-8b-low-latency"  # SGLang 0.5.6.post2


def test_a_value_outside_sglang_choices_is_refused(monkeypatch):
    flags = RECIPES[VLM].extra_flags + (("--attention-backend", "no-such-backend"),)
    assert error_of(monkeypatch, VLM, extra_flags=flags) == (
        "recipe 'qwen3.6-35b-vlm': --attention-backend 'no-such-backend' is not accepted by SGLang 0.5.10.post1; "
        "allowed: triton, torch_native, flex_attention, nsa, cutlass_mla, fa3, fa4, flashinfer, flashmla, "
        "trtllm_mla, trtllm_mha, dual_chunk_flash_attn, aiter, wave, intel_amx, ascend, intel_xpu"
    )
    ok = resolve_with(monkeypatch, VLM, extra_flags=(("--attention-backend", "fa3"),))
    assert "--attention-backend" in sglang_args.launch_command(ok)


@pytest.mark.parametrize("recipe, flags, message", [
    (LOW, (("--decode-log-interval", "abc"),),
     "recipe 'qwen3-8b-low-latency': --decode-log-interval 'abc' is not a whole number "
     "(SGLang 0.5.6.post2 reads it with int); allowed: a whole number"),
    (VLM, (("--context-length", "12x"),),
     "recipe 'qwen3.6-35b-vlm': --context-length '12x' is not a whole number, optionally with k, M, G, T, Ki, Mi, "
     "Gi or Ti (SGLang 0.5.10.post1 reads it with human_readable_int); allowed: a whole number, optionally with "
     "k, M, G, T, Ki, Mi, Gi or Ti"),
    (LOW, (("--json-model-override-args", "{not json"),), None),  # a str in SGLang: parsed later, not by argparse
    (VLM, (("--enable-metrics", "1"),),
     "recipe 'qwen3.6-35b-vlm': --enable-metrics '1': SGLang 0.5.10.post1 declares --enable-metrics a switch "
     "that takes no value; allowed: ('--enable-metrics', None)"),
    (VLM, (("--context-length", None),),
     "recipe 'qwen3.6-35b-vlm': --context-length without a value: SGLang 0.5.10.post1 needs one; "
     "allowed: a whole number, optionally with k, M, G, T, Ki, Mi, Gi or Ti"),
    (VLM, (("--speculative-algorithm", "EAGLE"),),
     "recipe 'qwen3.6-35b-vlm': --speculative-algorithm is given twice ('EAGLE', then 'EAGLE'); "
     "allowed: once (argparse would keep the last silently)"),
    (VLM, (("--tensor-parallel-size", "1"),),
     "recipe 'qwen3.6-35b-vlm': --tp-size and --tensor-parallel-size set the same SGLang setting ('1', then '1'); "
     "allowed: once (argparse would keep the last silently)"),
    (VLM, (("--hybrid-kvcache-ratio", None),),
     "recipe 'qwen3.6-35b-vlm': SGLang 0.5.10.post1 ignores --hybrid-kvcache-ratio (Note: --hybrid-kvcache-ratio "
     "is deprecated now. Please use --swa-full-tokens-ratio instead.); allowed: --swa-full-tokens-ratio"),
    (VLM, (("--tp", "1"),),
     "recipe 'qwen3.6-35b-vlm': SGLang 0.5.10.post1 has no --tp (argparse would read it as an abbreviation, "
     "which breaks the day a new flag shares the prefix); allowed: --tp-size"),
])
def test_bad_values_are_one_line_at_resolve_time(monkeypatch, recipe, flags, message):
    if message is None:
        resolve_with(monkeypatch, recipe, extra_flags=flags)
    else:
        assert error_of(monkeypatch, recipe, extra_flags=flags) == message


def test_good_values_of_every_kind_pass(monkeypatch):
    flags = (
        ("--context-length", "128k"),  # human_readable_int
        ("--mamba-scheduler-strategy", "no_buffer"),  # a choice
        ("--json-model-override-args", '{"rope_scaling": null}'),
        ("--cuda-graph-bs", "8"),  # nargs="+"
        ("--lora-target-modules", None),  # nargs="*" may be empty
        ("--stream-output", None),  # deprecated but still honoured: a plan warning, not an error
    )
    d = resolve_with(monkeypatch, VLM, extra_flags=flags)
    assert sglang_flags.deprecation_warnings(d) == [
        "SGLang 0.5.10.post1 deprecates --stream-output ([Deprecated] Use --incremental-streaming-output instead.); "
        "use --incremental-streaming-output"
    ]


def test_the_compile_command_is_checked_too(monkeypatch):
    table = json.loads(json.dumps(sglang_flags._versions()))
    table["0.5.6.post2"]["compile_deep_gemm_extra_flags"] = {}
    monkeypatch.setattr(sglang_flags, "_versions", lambda: table)
    message = error_of(monkeypatch, LOW)
    assert message.startswith("recipe 'qwen3-8b-low-latency': SGLang 0.5.6.post2 has no --timeout (")


# ---------------------------------------------------------------------------
# Moving a recipe to another SGLang version
# ---------------------------------------------------------------------------


def test_moving_to_a_version_that_renamed_a_flag(monkeypatch):
    assert error_of(monkeypatch, VLM, sglang_version="0.5.23") == (
        "recipe 'qwen3.6-35b-vlm': SGLang 0.5.23 has no --mamba-scheduler-strategy "
        "(renamed to --mamba-radix-cache-strategy; removed after 0.5.19); allowed: --mamba-radix-cache-strategy"
    )
    # A flag the project derives follows the version itself (sglang_args.RENAMED): no refusal for it.
    assert "--cuda-graph-max-bs-decode" in sglang_args.launch_command(resolve_with(monkeypatch, LOW,
                                                                                   sglang_version="0.5.23"))


def test_moving_to_a_version_that_removed_a_flag(monkeypatch):
    flags = (("--enable-double-sparsity", None),)
    resolve_with(monkeypatch, VLM, extra_flags=flags)  # 0.5.10.post1 has it
    assert error_of(monkeypatch, VLM, extra_flags=flags, sglang_version="0.5.11") == (
        "recipe 'qwen3.6-35b-vlm': SGLang 0.5.11 has no --enable-double-sparsity "
        "(removed after 0.5.10.post1, with no successor); allowed: leave it out"
    )


def test_moving_back_to_a_version_before_a_flag(monkeypatch):
    assert error_of(monkeypatch, VLM, sglang_version="0.5.6.post2") == (
        "recipe 'qwen3.6-35b-vlm': SGLang 0.5.6.post2 has no --mamba-scheduler-strategy (added after 0.5.6.post2, "
        "first in 0.5.10.post1); allowed: full flag names that SGLang 0.5.6.post2 declares "
        "(infra/control/sglang_versions.json)"
    )
    assert sglang_flags.missing_flag("0.5.11", "--cuda-graph-max-bs-decode") == (
        "SGLang 0.5.11 has no --cuda-graph-max-bs-decode (added after 0.5.11, first in 0.5.17; 0.5.11 calls it "
        "--cuda-graph-max-bs); allowed: --cuda-graph-max-bs"
    )


def test_a_version_without_a_table_says_how_to_add_one(monkeypatch):
    assert error_of(monkeypatch, LOW, sglang_version="0.5.9") == (
        "sglang_version = '0.5.9' has no flag table; known versions: "
        f"{', '.join(sglang_flags.supported_versions())} (add it with `invoke sglang-flags --version 0.5.9`)"
    )
