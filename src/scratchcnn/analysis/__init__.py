"""Looking at trained models: attribution, feature analysis and evaluation metrics."""
