"""Earning rules: a pure function from (programme, member snapshot, event) to postings."""
