"""The wire format between Director and the orchestrator: pydantic models and error codes, no I/O.

One module per kind of message: `sites` (Director's events), `results` (what the orchestrator
says back), `terminals`, `files`, `metrics` (what sites use and serve); `codes` (every error
code), `headers` (AMQP header names) and the value types they share (`base`, `hostnames`,
`images`, `env`).
"""
