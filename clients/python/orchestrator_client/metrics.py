"""What sites use and nodes hold, as of the latest window, on request (the periodic events come
through `client.results`):

    latest = await client.metrics.site(7)                 # SiteMetrics, or None: no window yet
    async for metrics in client.metrics.all_sites(): ...  # every site, page by page, by id
    nodes = await client.metrics.nodes()                  # [NodeMetrics]

The orchestrator answers from its memory of the latest window (`METRICS_SECONDS`); one that
collects no metrics (`METRICS_SECONDS=0`) does not answer: `TimeoutError` (`PublishRefused` with a
named reply queue, whose requests are published `mandatory`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from orchestrator_client.requests import Requests
from orchestrator_contract.metrics import (
    DEFAULT_PAGE,
    MAX_PAGE,
    MetricsNodes,
    MetricsSite,
    MetricsSites,
    NodeMetrics,
    NodesResult,
    SiteMetrics,
    SiteMetricsResult,
    SitesPage,
)


class Metrics:
    def __init__(self, requests: Requests) -> None:
        self._requests = requests

    async def site(self, site_id: int) -> SiteMetrics | None:
        """The site's latest window; None when there is none yet (a site newer than it, or one
        the orchestrator does not hold)."""
        return (await self._requests.call(MetricsSite(site_id=site_id), SiteMetricsResult)).metrics

    async def sites(self, after: int | None = None, limit: int = DEFAULT_PAGE) -> SitesPage:
        """One page of every site's latest window, by site id (`next_after` asks for the next)."""
        return await self._requests.call(MetricsSites(after=after, limit=limit), SitesPage)

    async def all_sites(self, limit: int = MAX_PAGE) -> AsyncIterator[SiteMetrics]:
        """Every site's latest window, page by page."""
        after = None
        while True:
            page = await self.sites(after, limit)
            for metrics in page.sites:
                yield metrics
            if page.next_after is None:
                return
            after = page.next_after

    async def nodes(self) -> list[NodeMetrics]:
        """The latest window of every node that runs sites."""
        return (await self._requests.call(MetricsNodes(), NodesResult)).nodes
