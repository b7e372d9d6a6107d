"""The registry: customers and their admission, the inventory, and who held which IP when."""
