-- The demo source database `shop`: customers and their orders, with a few thousand rows.
-- Used by scripts/quickstart.sh (psql -d shop -f demo/shop.sql) and by docker-compose.yml (run
-- in `shop` when the postgres container first starts). Running it again changes nothing.

CREATE TABLE IF NOT EXISTS customers (
    id         int PRIMARY KEY,
    name       text NOT NULL,
    email      text NOT NULL,
    country    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders (
    id          bigserial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers (id),
    amount      numeric(10, 2) NOT NULL,
    status      text NOT NULL,
    created_at  timestamptz NOT NULL
);

INSERT INTO customers (id, name, email, country)
SELECT g, 'customer ' || g, 'c' || g || '@example.com', (ARRAY['DE', 'FR', 'US', 'JP', 'BR'])[1 + g % 5]
  FROM generate_series(1, 2000) AS g
 WHERE NOT EXISTS (SELECT 1 FROM customers);

-- Orders of the last ten minutes, 10 a second.
INSERT INTO orders (customer_id, amount, status, created_at)
SELECT 1 + (g * 7919) % 2000, round((5 + (g * 31) % 200)::numeric + 0.99, 2), 'paid',
       now() - interval '10 minutes' + g * interval '100 milliseconds'
  FROM generate_series(1, 5000) AS g
 WHERE NOT EXISTS (SELECT 1 FROM orders);
