"""Drives the Ollama simulator with the official `ollama` Python client.

Usage: python ollama_client_check.py http://127.0.0.1:PORT

Checks that the client parses every answer into its typed responses, and
exits non-zero (with a message on stderr) on the first mismatch.
"""

import sys

import ollama

MODEL = "llama3.2:1b"


def check(condition, message):
    if not condition:
        sys.stderr.write(f"FAILED: {message}\n")
        sys.exit(1)


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: ollama_client_check.py HOST_URL\n")
        sys.exit(2)
    client = ollama.Client(host=sys.argv[1])

    # list(): the configured models, typed.
    listed = client.list()
    names = [m.model for m in listed.models]
    check(names == ["llama3.2:1b", "qwen2.5:0.5b"], f"list() models: {names}")
    for m in listed.models:
        check(m.details is not None and m.details.family, f"details of {m.model}: {m.details}")
        check(m.size is not None and int(m.size) > 0, f"size of {m.model}: {m.size}")
        check(m.modified_at is not None, f"modified_at of {m.model}")
        check(m.digest and len(m.digest) == 64, f"digest of {m.model}: {m.digest}")

    # chat(stream=False)
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "My favourite colour is teal"},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "What is my favourite colour?"},
    ]
    whole = client.chat(model=MODEL, messages=messages, stream=False)
    content = whole.message.content
    check(whole.message.role == "assistant", f"role: {whole.message.role}")
    check(
        content.startswith(
            'Echo: What is my favourite colour?. Context: 2 earlier messages '
            '(first: "My favourite colour is teal")'
        ),
        f"chat content: {content!r}",
    )
    check(whole.done is True, f"done: {whole.done}")
    check(whole.done_reason == "stop", f"done_reason: {whole.done_reason}")
    check(whole.eval_count == len(content.split(" ")), f"eval_count: {whole.eval_count}")
    check(whole.prompt_eval_count and whole.prompt_eval_count > 0, "prompt_eval_count")
    check(whole.total_duration and whole.total_duration > 0, "total_duration")
    check(whole.load_duration and whole.load_duration > 0, "load_duration")
    check(whole.eval_duration and whole.eval_duration > 0, "eval_duration")
    check(whole.model == MODEL, f"model: {whole.model}")
    check(whole.created_at and whole.created_at.endswith("Z"), f"created_at: {whole.created_at}")

    # chat(stream=True): chunks concatenate to the same content.
    chunks = list(client.chat(model=MODEL, messages=messages, stream=True))
    check(len(chunks) >= 2, f"chunks: {len(chunks)}")
    check(all(not c.done for c in chunks[:-1]), "only the last chunk is done")
    last = chunks[-1]
    check(last.done is True and last.done_reason == "stop", f"last chunk: {last}")
    check(last.message.content == "", f"last chunk content: {last.message.content!r}")
    check(last.eval_count == len(chunks) - 1, f"stream eval_count: {last.eval_count}")
    streamed = "".join(c.message.content or "" for c in chunks)
    check(streamed == content, f"stream {streamed!r} != whole {content!r}")

    # num_predict cuts the reply.
    short = client.chat(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        options={"num_predict": 3},
        stream=False,
    )
    check(short.done_reason == "length", f"num_predict done_reason: {short.done_reason}")
    check(short.eval_count == 3, f"num_predict eval_count: {short.eval_count}")

    # generate(stream=False) and stream=True.
    gen = client.generate(model=MODEL, prompt="Why is the sky blue?", stream=False)
    check(
        gen.response.startswith("Echo: Why is the sky blue?. Context: 0 earlier messages"),
        f"generate response: {gen.response!r}",
    )
    check(gen.done is True and gen.done_reason == "stop", f"generate done: {gen}")
    check(gen.context is not None and len(gen.context) > 0, "generate context")
    check(gen.eval_count == len(gen.response.split(" ")), f"generate eval_count: {gen.eval_count}")
    parts = list(client.generate(model=MODEL, prompt="Why is the sky blue?", stream=True))
    check("".join(p.response or "" for p in parts) == gen.response, "generate stream == whole")
    check(parts[-1].done is True, "generate last part is done")

    # ps(): the used model is loaded.
    running = client.ps()
    loaded = [m.model for m in running.models]
    check(MODEL in loaded, f"ps() models: {loaded}")
    check(all(m.expires_at is not None for m in running.models), "ps() expires_at")

    # Unknown model: ResponseError with Ollama's status and message.
    for call in (
        lambda: client.chat(model="nope:1b", messages=[{"role": "user", "content": "x"}], stream=False),
        lambda: list(client.chat(model="nope:1b", messages=[{"role": "user", "content": "x"}], stream=True)),
        lambda: client.generate(model="nope:1b", prompt="x", stream=False),
    ):
        try:
            call()
        except ollama.ResponseError as error:
            check(error.status_code == 404, f"status_code: {error.status_code}")
            check(error.error == "model 'nope:1b' not found", f"error: {error.error!r}")
        else:
            check(False, "an unknown model did not raise ResponseError")

    print("ollama client check: OK")


if __name__ == "__main__":
    main()
