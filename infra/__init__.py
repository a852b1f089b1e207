"""The library: typed settings, model recipes, the Modal app, the in-container server lifecycle, the client.

Nothing here imports `stages/` or `tasks.py`. The modules a container needs (deployment,
recipes, lifecycle, weights, kernels, sglang_args) use only the standard library (and
`modal` where they define Modal objects), so the container's second import of the app
needs nothing the SGLang image lacks.
"""
