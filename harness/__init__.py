"""The local stack as the tests and the benchmark drive it, shared by both (tests/support builds
the tests' fixtures on it; bench/ measures with it):

- `scope`: this process's share of the machine (site ids, vhost and deployment names);
- `stack`: addresses, broker vhosts, Docker, wiping this process's sites;
- `rabbit`: the broker's definitions and users; `broker`: connections as the stack's users, the
  dead-letter queue;
- `director`: events as Director publishes them, the results it reads, a site owner's files;
- `process`: the orchestrator as a child process (and its command line);
- `waiting`: `eventually`.
"""
