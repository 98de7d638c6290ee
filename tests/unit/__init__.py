"""The unit tier: in process, no neardex server and no `neardex` command; pure functions, a store
or catalog in a temporary folder (milvus-lite's file store included), the bundled model, and the
client against a scripted in-process stand-in. `make test-fast` runs it."""
