"""The programme document: what members earn and how points behave."""
