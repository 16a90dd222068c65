"""The plaintext BERT: config, numpy forward and manual backward, weights, tokenizer, GLUE data."""
