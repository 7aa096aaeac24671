/*
 * store_customer.h: a customer as messages read one: the customer's
 * fields, figures and tags as one JSON object (the template context
 * render.c builds on, also shown by preview). How many customers a changed
 * audience lets in and drops (reload) is store_eval_audience_delta.
 */
#ifndef NUDGE_STORE_CUSTOMER_H
#define NUDGE_STORE_CUSTOMER_H

#include <jansson.h>
#include <stdint.h>

struct store;

/*
 * Customer customer_id (customers.id) as a JSON object: the custom
 * attributes first, then the built-in fields, which win a name clash: id
 * (the business's ext_id), name, first_name, email, phone, birthday, tz,
 * tier, owner, created_at, orders_count, total_spent (in currency units),
 * last_order_date, first_order_date (JSON null where unset), and tags (an
 * array in tag order). NULL if there is no such customer or the store
 * fails. Kept prepared: it runs once per message.
 */
json_t *store_customer_doc(struct store *st, int64_t customer_id);


#endif
