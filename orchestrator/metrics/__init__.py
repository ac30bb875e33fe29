"""What each site uses and serves, and what each node holds (issue 32; docs/metrics.md).

- `cgroups`, `node`: the kernel's files of a site task's cgroup and of the node;
- `windows`: two passes and Docker's events between them into one window per site (pure);
- `collector`: a node's collector, every period on the wall clock's grid;
- `served`: what Traefik served per site, from its Prometheus counters;
- `samples`: what a collector sends the orchestrator;
- `reporter`: samples, Traefik and the swarm's sites into `site.metrics` and `node.metrics`;
- `processor`: the metrics queues (Director's requests for current values, the samples).
"""
