"""Analytics: predicted customer lifetime value (``clv`` pure maths, ``clv_data`` I/O, ``api``)."""
