"""Training and evaluation of genre models on a user's own labels."""
