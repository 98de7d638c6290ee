"""neardex indexer: read documents, cut them into token-bounded chunks, embed and store them."""
