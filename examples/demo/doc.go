// Demo is busline in a few seconds: five services of a shop on one
// in-memory broker, sending, publishing, deferring, replying, requesting,
// failing, retrying and replaying, each step printed as it happens. `make
// demo` runs it.
//
// # The story
//
//  1. Send: the shop sends the command PlaceOrder to the orders service.
//  2. Reply: orders answers the shop with OrderAccepted.
//  3. Publish: orders publishes OrderPlaced under the topic
//     "orders.placed.eu"; shipping (subscribed to "orders.#") and billing
//     ("orders.*.eu") each get a copy.
//  4. Defer: the shop defers a PaymentReminder by 2 seconds.
//  5. Request: the shop asks stock for a level and waits for the answer.
//  6. Retries: the payment gateway goes down; billing fails the next
//     order, is retried twice, and the message lands in the error queue
//     with the reason.
//  7. Replay: the gateway is back; the message is replayed from the error
//     queue and billing charges the order.
//
// Retries are 0.5 s and 1 s apart here (PikaBus's default is 2 s, 4 s, ...
// 10 s, five times). The demo exits with status 0 when the story
// completed, 1 if it did not within 15 seconds.
package main
