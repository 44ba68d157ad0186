"""The programme simulator: replay an order history through a programme design, off-line."""
