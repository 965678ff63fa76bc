/* 8250/16550A UART at 0x3f8, IRQ 4: guest console out to a file descriptor
 * (stdout), host input in through the VMM event loop. */
#ifndef WISP_SERIAL_H
#define WISP_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "evloop.h"

#define SERIAL_FIFO_SIZE 64
#define SERIAL_NR_REGS   8

/* Register offsets and bits (16550A). */
#define UART_RX   0  /* RBR (read), THR (write); DLL with DLAB */
#define UART_IER  1  /* DLM with DLAB */
#define UART_IIR  2  /* read */
#define UART_FCR  2  /* write */
#define UART_LCR  3
#define UART_MCR  4
#define UART_LSR  5
#define UART_MSR  6
#define UART_SCR  7

#define UART_IER_RDI  0x01
#define UART_IER_THRI 0x02
#define UART_IER_RLSI 0x04
#define UART_IER_MSI  0x08
#define UART_IIR_NO_INT 0x01
#define UART_IIR_MSI  0x00
#define UART_IIR_THRI 0x02
#define UART_IIR_RDI  0x04
#define UART_IIR_FIFO 0xc0
#define UART_FCR_ENABLE 0x01
#define UART_FCR_CLEAR_RX 0x02
#define UART_FCR_CLEAR_TX 0x04
#define UART_LCR_DLAB 0x80
#define UART_MCR_LOOP 0x10
#define UART_LSR_DR   0x01
#define UART_LSR_OE   0x02
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40

struct serial {
	pthread_mutex_t lock;
	uint8_t ier, iir_thri_pending, fcr, lcr, mcr, lsr, msr, scr, dll, dlm;
	uint8_t rx[SERIAL_FIFO_SIZE];
	unsigned rx_head, rx_count;
	int out_fd;                        /* guest output; -1 drops it */
	int in_fd;                         /* host input; -1 when none */
	bool in_polling;                   /* in_fd registered for EPOLLIN */
	struct evloop *loop;
	void (*irq)(void *opaque);         /* pulse IRQ 4 */
	void *irq_opaque;
	uint64_t tx_bytes, rx_bytes, tx_dropped;
};

extern const struct bus_ops serial_bus_ops;

void serial_init(struct serial *s, int out_fd, void (*irq)(void *), void *irq_opaque);
void serial_destroy(struct serial *s);
/* Feed host input: returns how many bytes the receive FIFO took. */
size_t serial_input(struct serial *s, const uint8_t *buf, size_t len);
/* Read in_fd from the event loop whenever the FIFO has room. */
int serial_attach_input(struct serial *s, struct evloop *loop, int in_fd);

#endif
