"""What a query says, independent of any store: the filter language (parsed and validated once)
and the analysed query text. Each store compiles these into its own language."""
