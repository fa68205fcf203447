"""The official `openai` client against `vidgate serve`.

Run by tests/it/serve/openai.rs, which starts the service and reads what
this prints: one JSON object with what each call gave back.

Environment: VIDGATE_BASE_URL (the service's /v1), VIDGATE_KEY, and for
each case a clip: VIDGATE_CLIP_DATA, VIDGATE_CLIP_DATA_STREAM (files sent
as data URLs), VIDGATE_URL, VIDGATE_URL_STREAM (http URLs).
"""

import base64
import json
import os
import sys

import openai


def data_url(path):
    with open(path, "rb") as f:
        return "data:video/mp4;base64," + base64.b64encode(f.read()).decode("ascii")


def messages(url, question):
    return [
        {"role": "system", "content": "Answer briefly."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": question},
                {"type": "video_url", "video_url": {"url": url}},
            ],
        },
    ]


def complete(client, model, url):
    reply = client.chat.completions.create(
        model=model,
        messages=messages(url, "What is shown?"),
        temperature=0.2,
        max_tokens=500,
    )
    extra = reply.model_extra or {}
    return {
        "object": reply.object,
        "id": reply.id,
        "model": reply.model,
        "role": reply.choices[0].message.role,
        "content": reply.choices[0].message.content,
        "finish_reason": reply.choices[0].finish_reason,
        "usage": reply.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"}),
        "vidgate": extra.get("vidgate"),
    }


def stream(client, model, url):
    chunks = client.chat.completions.create(
        model=model,
        messages=messages(url, "What is shown?"),
        stream=True,
        stream_options={"include_usage": True},
        temperature=0.2,
    )
    out = {"roles": [], "content": "", "finish_reasons": [], "usage": None, "vidgate": None, "run_ids": [],
           "objects": set(), "chunks": 0}
    for chunk in chunks:
        out["chunks"] += 1
        out["objects"].add(chunk.object)
        extra = chunk.model_extra or {}
        if extra.get("vidgate"):
            out["run_ids"].append(extra["vidgate"].get("run_id"))
            if "report" in extra["vidgate"]:
                out["vidgate"] = extra["vidgate"]
        if chunk.usage is not None:
            out["usage"] = chunk.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"})
            assert chunk.choices == [], "the usage chunk has no choices"
        for choice in chunk.choices:
            if choice.delta.role:
                out["roles"].append(choice.delta.role)
            if choice.delta.content:
                out["content"] += choice.delta.content
            if choice.finish_reason:
                out["finish_reasons"].append(choice.finish_reason)
    out["objects"] = sorted(out["objects"])
    return out


def main():
    env = os.environ
    client = openai.OpenAI(base_url=env["VIDGATE_BASE_URL"], api_key=env["VIDGATE_KEY"], max_retries=0)
    result = {"openai_version": openai.__version__}
    result["models"] = [m.id for m in client.models.list()]
    result["data_url"] = complete(client, "vidgate/ask", data_url(env["VIDGATE_CLIP_DATA"]))
    result["data_url_stream"] = stream(client, "vidgate/ask", data_url(env["VIDGATE_CLIP_DATA_STREAM"]))
    result["http_url"] = complete(client, "vidgate/timeline", env["VIDGATE_URL"])
    result["http_url_stream"] = stream(client, "vidgate/describe", env["VIDGATE_URL_STREAM"])
    try:
        not_video = "data:text/plain;base64," + base64.b64encode(b"not a video").decode("ascii")
        client.chat.completions.create(model="vidgate/ask", messages=messages(not_video, "What is shown?"))
        result["bad_request"] = None
    except openai.BadRequestError as e:
        result["bad_request"] = {"status": e.status_code, "param": e.param, "type": e.type, "message": e.message}
    try:
        client.chat.completions.create(model="gpt-4o", messages=messages(env["VIDGATE_URL"], "What?"))
        result["not_found"] = None
    except openai.NotFoundError as e:
        result["not_found"] = {"status": e.status_code, "code": e.code, "param": e.param}
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
