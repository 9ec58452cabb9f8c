"""Dashboard pages show each amount with its own currency's decimals (JPY none, KWD three)."""

from __future__ import annotations

import httpx

from antaeus.clock import ManualClock
from antaeus.simulators.simulated import SimulatedPaymentProvider
from antaeus.storage.database import Database
from tests.api.test_billing_api import (
    charge,
    get_json,
    new_customer,
    new_invoice,
    simulator,  # noqa: F401  (the fixture)
    trigger,
)
from tests.dashboard.test_pages import browser, signed_in  # noqa: F401  (the fixtures)


async def test_pages_show_jpy_and_kwd_with_their_decimals(
    signed_in: httpx.AsyncClient,  # noqa: F811
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> None:
    yen = await new_invoice(client, await new_customer(client, "JPY"), "1234567", "JPY")
    dinar = await new_invoice(client, await new_customer(client, "KWD"), "1234.5", "KWD")
    euro = await new_invoice(client, await new_customer(client, "EUR"), "1234.5", "EUR")
    run = await trigger(client)
    await charge(database, simulator, clock)
    assert (await get_json(client, f"/rest/v1/invoices/{yen}"))["status"] == "PAID"

    shown = {"JPY": "1,234,567 JPY", "KWD": "1,234.500 KWD", "EUR": "1,234.50 EUR"}
    for iid, code in [(yen, "JPY"), (dinar, "KWD"), (euro, "EUR")]:
        page = await signed_in.get(f"/invoices/{iid}")
        assert page.status_code == 200, page.text
        assert shown[code] in page.text
    listing = (await signed_in.get("/invoices")).text
    for code in shown:
        assert shown[code] in " ".join(listing.split()), code  # the cell spans lines
    for url in (f"/runs/{run['id']}", "/"):
        text = (await signed_in.get(url)).text
        for code in shown:
            assert shown[code] in text, (url, code)
    live = await signed_in.get(f"/live/runs/{run['id']}")
    assert '{"value":1234567,"currency":"JPY"}' in live.text
    assert '{"value":1234.500,"currency":"KWD"}' in live.text
    assert '{"value":1234.50,"currency":"EUR"}' in live.text
