"""Human evaluation: rating and blind pairwise tasks, evaluator queues, agreement and leaderboards."""
