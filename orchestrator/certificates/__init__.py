"""HTTPS certificates for sites, decided by the control plane (the issuer).

One issuer per deployment: the active orchestrator replica. It orders certificates over ACME
(`ca`), one per custom domain, after checking that the domain points here and that CAA allows the
CA (`resolver`, `coverage`), within a rate budget kept below the CA's limits (`budget`); it renews
at a third of the lifetime left, with backoff on failure (`renewal`). Names under the operator's
wildcard certificates are served by those (`coverage`). Everything lives in a store both replicas
see (`store`): records per domain, the budget's ledger, the account, an order under way, and the
files Traefik's file provider reads; so a replica that takes over resumes what the other started
and issues nothing twice. Decisions are pure functions over the records; `issuer` does the I/O.
"""
