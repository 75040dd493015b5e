"""llama-cpp-python called directly, for section g: the same model file, context size, thread
count, OpenMP wait policy and logits setting as scripts/serve_local_llm.py (read from that script
and the same environment variables), no HTTP, no LiteLLM, no Temporal.

A long-lived child process of the benchmark, answering one JSON line per request on stdin:

    {"op": "generate", "prompt": "...", "max_tokens": 160, "temperature": 0.7, "stop": [...],
     "top_p": 0.9, "repeat_penalty": 1.1, "seed": 1234}
        -> {"seconds": 1.9, "completion_tokens": 52, "text": "..."}
    {"op": "tokenize", "texts": ["...", ...]} -> {"counts": [12, ...]}

It prints `READY` once the model is loaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _serve_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "serve_local_llm", REPO / "scripts" / "serve_local_llm.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    # As the server does, before llama_cpp loads OpenMP: spinning waits starve a 2-core machine.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from llama_cpp import Llama

    serve = _serve_module()
    threads = int(os.environ.get("LOCAL_LLM_THREADS", serve.DEFAULT_THREADS))
    llm = Llama(
        model_path=str(serve.model_path()),
        n_ctx=int(os.environ.get("LOCAL_LLM_N_CTX", serve.DEFAULT_N_CTX)),
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=False,
        verbose=False,
    )
    print("READY", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "generate":
            started = time.perf_counter()
            out = llm.create_completion(
                prompt=request["prompt"],
                max_tokens=request["max_tokens"],
                temperature=request["temperature"],
                top_p=request.get("top_p", 0.95),
                repeat_penalty=request.get("repeat_penalty", 1.0),
                seed=request.get("seed"),
                stop=request["stop"] or None,
            )
            seconds = time.perf_counter() - started
            answer = {
                "seconds": seconds,
                "completion_tokens": out["usage"]["completion_tokens"],
                "text": out["choices"][0]["text"],
            }
        elif request["op"] == "tokenize":
            answer = {
                "counts": [
                    len(llm.tokenize(text.encode(), add_bos=False, special=False))
                    for text in request["texts"]
                ]
            }
        else:
            answer = {"error": f"unknown op {request['op']!r}"}
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
