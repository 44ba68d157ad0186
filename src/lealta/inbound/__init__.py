"""Inbound adapters: shop-platform webhooks (Shopify ``orders/paid`` and ``refunds/create``),
customer-data-platform style ``track``/``identify``, publishable (browser-safe) API keys and
the public catalogue they may read."""
