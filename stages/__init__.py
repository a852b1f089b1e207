"""One module per stage (build, download, compile, deploy, smoke, try, promote, rollback, status, scale,
bench) and the pipeline that chains them. Each takes a `Context` (settings plus the Modal boundary)
and a `Deployment`, and returns a `StageResult`; tasks.py only parses flags and calls them."""
