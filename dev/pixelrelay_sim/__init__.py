"""pixelrelay_sim: a local stand-in for the OpenAI Images API, for dev, tests and benchmarks,
as OpenAI serves it (/v1/images/...) and as Azure OpenAI's deployments do (azure.py).

It speaks the real protocol over real HTTP, renders real images of the requested size
and format (deterministic from the prompt), and injects faults on demand.
"""
