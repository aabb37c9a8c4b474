"""The official `openai` and `ollama` Python clients against the gateway.

Run by tests/e2e/compat.rs with GATEWAY (base URL), API_KEY, MODEL and
SESSION (a session made through /api/chat) in the environment. Prints one
JSON object of what each client saw; the Rust test asserts on it and on the
rows stored.
"""

import json
import os

import ollama
import openai

GATEWAY = os.environ["GATEWAY"]
KEY = os.environ["API_KEY"]
MODEL = os.environ["MODEL"]
SESSION = os.environ["SESSION"]

seen = {}

# ---------------------------------------------------------------- OpenAI
client = openai.OpenAI(base_url=f"{GATEWAY}/v1", api_key=KEY, max_retries=0)

whole = client.chat.completions.create(
    model=MODEL,
    messages=[
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hi! How can I help?"},
        {"role": "user", "content": "Where is my order?"},
    ],
    user="openai-user",
    temperature=0.2,
    seed=7,
)
seen["openai"] = {
    "id": whole.id,
    "object": whole.object,
    "model": whole.model,
    "content": whole.choices[0].message.content,
    "role": whole.choices[0].message.role,
    "finish_reason": whole.choices[0].finish_reason,
    "usage": whole.usage.model_dump(),
}

chunks = list(
    client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Stream this please"}]}],
        stream=True,
        stream_options={"include_usage": True},
    )
)
with_choices = [c for c in chunks if c.choices]
seen["openai_stream"] = {
    "objects": sorted({c.object for c in chunks}),
    "ids": sorted({c.id for c in chunks}),
    "first_role": with_choices[0].choices[0].delta.role,
    "text": "".join(c.choices[0].delta.content or "" for c in with_choices),
    "finish_reasons": [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason],
    "last_usage": chunks[-1].usage.model_dump() if chunks[-1].usage else None,
    "last_has_choices": bool(chunks[-1].choices),
}

short = client.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "Tell me a long story"}], max_tokens=3
)
seen["openai_short"] = {
    "finish_reason": short.choices[0].finish_reason,
    "completion_tokens": short.usage.completion_tokens,
}

continued = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "And now?"}],
    user="native-user",
    extra_headers={"X-Chatbot-Session": SESSION},
)
seen["openai_session"] = continued.choices[0].message.content


def failure(call):
    try:
        call()
    except openai.APIStatusError as error:
        return {"status": error.status_code, "body": error.body, "kind": type(error).__name__}
    return None


seen["openai_errors"] = {
    "tools": failure(
        lambda: client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )
    ),
    "n": failure(
        lambda: client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], n=2)
    ),
    "model": failure(
        lambda: client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    ),
    "empty": failure(
        lambda: client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "  "}])
    ),
    "key": failure(
        lambda: openai.OpenAI(base_url=f"{GATEWAY}/v1", api_key="cbk_not_a_key", max_retries=0)
        .chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    ),
}
seen["openai_models"] = [m.id for m in client.models.list()]

# ---------------------------------------------------------------- Ollama
local = ollama.Client(host=f"{GATEWAY}/ollama", headers={"Authorization": f"Bearer {KEY}"})

chat = local.chat(
    model=MODEL,
    messages=[
        {"role": "user", "content": "My first question"},
        {"role": "assistant", "content": "An answer"},
        {"role": "user", "content": "My second question"},
    ],
    options={"temperature": 0, "seed": 1},
)
seen["ollama_chat"] = {
    "model": chat.model,
    "role": chat.message.role,
    "content": chat.message.content,
    "done": chat.done,
    "done_reason": chat.done_reason,
    "eval_count": chat.eval_count,
    "prompt_eval_count": chat.prompt_eval_count,
    "total_duration": chat.total_duration,
    "created_at": chat.created_at,
}

parts = list(local.chat(model=MODEL, messages=[{"role": "user", "content": "Stream it"}], stream=True))
seen["ollama_chat_stream"] = {
    "text": "".join(p.message.content for p in parts),
    "pieces": len(parts),
    "done": [p.done for p in parts],
    "done_reason": parts[-1].done_reason,
    "eval_count": parts[-1].eval_count,
}

generated = local.generate(model=MODEL, prompt="Why is the sky blue?", system="Be short.")
seen["ollama_generate"] = {
    "response": generated.response,
    "done": generated.done,
    "done_reason": generated.done_reason,
}

pieces = list(local.generate(model=MODEL, prompt="Count to three", stream=True, options={"num_predict": 2}))
seen["ollama_generate_stream"] = {
    "text": "".join(p.response for p in pieces),
    "done": [p.done for p in pieces],
    "done_reason": pieces[-1].done_reason,
}

loaded = local.generate(model=MODEL, prompt="")
seen["ollama_load"] = {"done": loaded.done, "done_reason": loaded.done_reason}

seen["ollama_list"] = sorted(m.model for m in local.list().models)


def ollama_failure(call):
    try:
        call()
    except ollama.ResponseError as error:
        return {"status": error.status_code, "error": error.error}
    return None


seen["ollama_errors"] = {
    "model": ollama_failure(lambda: local.chat(model="no-such-model", messages=[{"role": "user", "content": "hi"}])),
    "option": ollama_failure(
        lambda: local.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}], options={"mirostat": 1})
    ),
    "key": ollama_failure(
        lambda: ollama.Client(host=f"{GATEWAY}/ollama", headers={"Authorization": "Bearer cbk_not_a_key"}).list()
    ),
}

print(json.dumps(seen))
