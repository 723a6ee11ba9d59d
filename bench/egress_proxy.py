"""What a session's egress proxy costs a page load: the demo site's home page (with its
cross-site widget frame) opened in a fresh page of a context without a proxy and of one
behind an EgressProxy, alternately, in one Chromium. Prints a table and writes JSON; it
asserts nothing.

    .venv/bin/python -m bench.egress_proxy [--loads 20] [--out bench/results/egress_proxy.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from pipeline.browser import launch_chromium, start_playwright
from pipeline.config import Settings
from pipeline.demo_site import DemoSite
from pipeline.egress_proxy import EgressProxy
from pipeline.network_policy import AddressPolicy, CachingResolver, MappedResolver


class _Counting:
    """Counts the proxy's questions: proof that the proxied context went through it."""

    def __init__(self) -> None:
        self.asked = 0
        self._rules = MappedResolver(_RULES)

    async def resolve(self, host: str) -> list[Any]:
        self.asked += 1
        return await self._rules.resolve(host)


# Loopback only: the demo site's two origins resolve by rules, nothing asks the DNS.
_RULES = "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"


async def _load(context: Any, url: str) -> float:
    page = await context.new_page()
    try:
        began = time.perf_counter()
        await page.goto(url, wait_until="load")
        await page.frame_locator("iframe").locator("body").wait_for()
        return (time.perf_counter() - began) * 1000
    finally:
        await page.close()


async def measure(loads: int) -> dict[str, Any]:
    settings = Settings(host_resolver_rules=_RULES)
    playwright = await start_playwright(settings)
    site = DemoSite()
    await site.start()
    counting = _Counting()
    policy = AddressPolicy([], CachingResolver(counting))
    policy.allow_origin(site.url)
    policy.allow_origin(site.widget_url)
    refused: list[str] = []
    proxy = EgressProxy(policy, lambda refusal: refused.append(str(refusal)))
    await proxy.start()
    browser = await launch_chromium(playwright, settings)
    try:
        direct = await browser.new_context()
        proxied = await browser.new_context(proxy=proxy.playwright_proxy())  # type: ignore[arg-type]
        url = site.url + "/"
        for context in (direct, proxied):  # warm up: caches, the renderer, proxy auth
            await _load(context, url)
        times: dict[str, list[float]] = {"direct": [], "proxied": []}
        for _ in range(loads):
            times["direct"].append(await _load(direct, url))
            times["proxied"].append(await _load(proxied, url))
    finally:
        await browser.close()
        await proxy.close()
        await site.stop()
        await playwright.stop()
    result: dict[str, Any] = {"loads": loads, "refused": refused,
                              "proxy_resolutions": counting.asked}
    for name, values in times.items():
        values.sort()
        result[name] = {"median_ms": statistics.median(values),
                        "p90_ms": values[int(0.9 * (len(values) - 1))],
                        "min_ms": values[0]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/results/egress_proxy.json"))
    args = parser.parse_args()
    result = asyncio.run(measure(args.loads))
    print(f"{'':10}{'median ms':>12}{'p90 ms':>10}{'min ms':>10}")
    for name in ("direct", "proxied"):
        row = result[name]
        print(f"{name:10}{row['median_ms']:12.1f}{row['p90_ms']:10.1f}{row['min_ms']:10.1f}")
    print(f"ratio (median) {result['proxied']['median_ms'] / result['direct']['median_ms']:.2f}"
          f"; refused: {len(result['refused'])}; the proxy resolved "
          f"{result['proxy_resolutions']} times")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
