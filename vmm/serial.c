/* 8250/16550A UART model: enough for Linux's 8250 driver (FIFO detection,
 * THRE and RX interrupts, loopback probe) and an interactive console. The
 * vCPU thread drives the registers; the VMM thread feeds input. */
#include "serial.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common/io.h"
#include "common/log.h"

void serial_init(struct serial *s, int out_fd, void (*irq)(void *), void *irq_opaque)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->out_fd = out_fd;
	s->in_fd = -1;
	s->irq = irq;
	s->irq_opaque = irq_opaque;
	s->lsr = UART_LSR_THRE | UART_LSR_TEMT;
	s->msr = 0xb0; /* DCD, DSR, CTS */
	s->mcr = 0x08; /* OUT2 */
	s->dll = 0x0c; /* 9600 baud */
}

void serial_destroy(struct serial *s)
{
	if (s->loop && s->in_fd >= 0 && s->in_polling)
		evloop_del(s->loop, s->in_fd);
	s->in_polling = false;
	pthread_mutex_destroy(&s->lock);
}

/* Highest priority pending interrupt as IIR reports it. */
static uint8_t serial_iir(const struct serial *s)
{
	uint8_t fifo = (s->fcr & UART_FCR_ENABLE) ? UART_IIR_FIFO : 0;
	if ((s->ier & UART_IER_RDI) && s->rx_count)
		return fifo | UART_IIR_RDI;
	if ((s->ier & UART_IER_THRI) && s->iir_thri_pending)
		return fifo | UART_IIR_THRI;
	return fifo | UART_IIR_NO_INT;
}

/* The line is edge-triggered through the IOAPIC: pulse it whenever an
 * interrupt is pending after a state change. Called with the lock held. */
static void serial_update_irq(struct serial *s)
{
	if (!(serial_iir(s) & UART_IIR_NO_INT) && s->irq)
		s->irq(s->irq_opaque);
}

static void serial_push_rx(struct serial *s, uint8_t c)
{
	if (s->rx_count == SERIAL_FIFO_SIZE) {
		s->lsr |= UART_LSR_OE;
		return;
	}
	s->rx[(s->rx_head + s->rx_count) % SERIAL_FIFO_SIZE] = c;
	s->rx_count++;
	s->lsr |= UART_LSR_DR;
}

static void serial_on_input(void *opaque, uint32_t events);

static void serial_resume_input(struct serial *s)
{
	if (s->in_fd >= 0 && !s->in_polling && s->rx_count < SERIAL_FIFO_SIZE) {
		s->in_polling = evloop_mod(s->loop, s->in_fd, EPOLLIN, serial_on_input, s) == 0;
	}
}

static uint8_t serial_read_reg(struct serial *s, uint64_t off)
{
	uint8_t v = 0xff;
	bool dlab = s->lcr & UART_LCR_DLAB;
	switch (off) {
	case UART_RX:
		if (dlab)
			return s->dll;
		v = 0;
		if (s->rx_count) {
			v = s->rx[s->rx_head];
			s->rx_head = (s->rx_head + 1) % SERIAL_FIFO_SIZE;
			s->rx_count--;
		}
		if (!s->rx_count)
			s->lsr &= (uint8_t)~UART_LSR_DR;
		serial_resume_input(s);
		serial_update_irq(s);
		return v;
	case UART_IER:
		return dlab ? s->dlm : s->ier;
	case UART_IIR:
		v = serial_iir(s);
		/* Reading IIR while it reports THRE clears that interrupt. */
		if ((v & 0x0f) == UART_IIR_THRI)
			s->iir_thri_pending = 0;
		return v;
	case UART_LCR:
		return s->lcr;
	case UART_MCR:
		return s->mcr;
	case UART_LSR:
		v = s->lsr;
		s->lsr &= (uint8_t)~UART_LSR_OE;
		return v;
	case UART_MSR:
		if (s->mcr & UART_MCR_LOOP) {
			/* Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD. */
			return (uint8_t)(((s->mcr & 0x01) << 5) | ((s->mcr & 0x02) << 3) |
					 ((s->mcr & 0x04) << 4) | ((s->mcr & 0x08) << 4));
		}
		return s->msr;
	case UART_SCR:
		return s->scr;
	}
	return v;
}

static void serial_write_reg(struct serial *s, uint64_t off, uint8_t v)
{
	bool dlab = s->lcr & UART_LCR_DLAB;
	switch (off) {
	case UART_RX:
		if (dlab) {
			s->dll = v;
			return;
		}
		if (s->mcr & UART_MCR_LOOP) {
			serial_push_rx(s, v);
		} else if (s->out_fd >= 0) {
			if (wisp_write_all(s->out_fd, &v, 1) == 0)
				s->tx_bytes++;
			else
				s->tx_dropped++;
		}
		/* The byte left at once: the holding register is empty again. */
		s->iir_thri_pending = 1;
		serial_update_irq(s);
		return;
	case UART_IER:
		if (dlab) {
			s->dlm = v;
			return;
		}
		{
			uint8_t old = s->ier;
			s->ier = v & 0x0f;
			/* Enabling THRI with an empty THR raises it right away. */
			if ((s->ier & UART_IER_THRI) && !(old & UART_IER_THRI))
				s->iir_thri_pending = 1;
		}
		serial_update_irq(s);
		return;
	case UART_FCR:
		if (v & UART_FCR_CLEAR_RX) {
			s->rx_count = 0;
			s->rx_head = 0;
			s->lsr &= (uint8_t)~UART_LSR_DR;
			serial_resume_input(s);
		}
		s->fcr = v & (UART_FCR_ENABLE | 0xc0);
		return;
	case UART_LCR:
		s->lcr = v;
		return;
	case UART_MCR:
		s->mcr = v & 0x1f;
		return;
	case UART_LSR:
	case UART_MSR:
		return; /* read-only */
	case UART_SCR:
		s->scr = v;
		return;
	}
}

static void serial_bus_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
	struct serial *s = opaque;
	pthread_mutex_lock(&s->lock);
	data[0] = serial_read_reg(s, off);
	pthread_mutex_unlock(&s->lock);
	/* Wider accesses read the following registers too. */
	for (uint32_t i = 1; i < len; i++)
		data[i] = 0xff;
}

static void serial_bus_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
	struct serial *s = opaque;
	(void)len;
	pthread_mutex_lock(&s->lock);
	serial_write_reg(s, off, data[0]);
	pthread_mutex_unlock(&s->lock);
}

const struct bus_ops serial_bus_ops = { .read = serial_bus_read, .write = serial_bus_write };

size_t serial_input(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t n = 0;
	pthread_mutex_lock(&s->lock);
	while (n < len && s->rx_count < SERIAL_FIFO_SIZE)
		serial_push_rx(s, buf[n++]);
	s->rx_bytes += n;
	if (n)
		serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

static void serial_on_input(void *opaque, uint32_t events)
{
	struct serial *s = opaque;
	uint8_t buf[SERIAL_FIFO_SIZE];
	pthread_mutex_lock(&s->lock);
	size_t room = SERIAL_FIFO_SIZE - s->rx_count;
	if (room == 0) {
		/* The guest has not drained the FIFO: stop polling until it does. */
		s->in_polling = evloop_mod(s->loop, s->in_fd, 0, serial_on_input, s) != 0;
		pthread_mutex_unlock(&s->lock);
		return;
	}
	pthread_mutex_unlock(&s->lock);
	ssize_t n = read(s->in_fd, buf, room);
	if (n > 0) {
		serial_input(s, buf, (size_t)n);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0 || (events & (EPOLLHUP | EPOLLERR)) || n == 0) {
		/* End of input: the guest keeps running without a keyboard. */
		pthread_mutex_lock(&s->lock);
		evloop_del(s->loop, s->in_fd);
		s->in_polling = false;
		s->in_fd = -1;
		pthread_mutex_unlock(&s->lock);
	}
}

int serial_attach_input(struct serial *s, struct evloop *loop, int in_fd)
{
	int r = evloop_add(loop, in_fd, EPOLLIN, serial_on_input, s);
	if (r)
		return r;
	pthread_mutex_lock(&s->lock);
	s->loop = loop;
	s->in_fd = in_fd;
	s->in_polling = true;
	pthread_mutex_unlock(&s->lock);
	return 0;
}
