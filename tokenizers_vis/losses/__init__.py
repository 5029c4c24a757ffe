"""Training losses. Each returns an unweighted term; the training system owns the weights."""
