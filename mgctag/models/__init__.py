"""Genre networks as plain torch.nn.Modules, and the registry that loads their weights."""
