"""quickstart_app: Flower's quickstart-pytorch (Message API), on scikit-learn's digits."""
