"""A local webhook receiver for trying Antaeus's webhooks: verifies, deduplicates, prints.

    pip install standardwebhooks          # the Standard Webhooks reference library
    python examples/webhook_receiver.py --port 7991 --secret whsec_...

then add it: POST /rest/v1/webhooks {"url": "http://127.0.0.1:7991/hook"} (the
answer holds the secret; start the receiver with it). A receiver on 127.0.0.1 is
a local address: start `antaeus serve` with ANTAEUS_WEBHOOK_ALLOW_PRIVATE=true,
or the URL is refused (422) and deliveries fail with `private_address`. Each delivery is checked
with the reference library (a forged or stale one answers 400, and Antaeus
tries it again later), and each event id is printed once however often it
arrives (delivery is at least once).
"""

from __future__ import annotations

import argparse
import json

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7991)
    parser.add_argument("--secret", required=True, help="the whsec_... the API answered")
    args = parser.parse_args()
    verifier = Webhook(args.secret)
    seen: set[str] = set()

    async def hook(request: web.Request) -> web.Response:
        body = await request.text()
        try:
            verifier.verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            print(f"refused: {exc}", flush=True)
            return web.Response(status=400, text="bad signature")
        event = json.loads(body)
        if event["id"] in seen:
            return web.Response(text="already had it")
        seen.add(event["id"])
        invoice = event["data"].get("invoice") or {}
        print(
            event["id"], event["type"], invoice.get("id", ""), invoice.get("status", ""), flush=True
        )
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    web.run_app(app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
