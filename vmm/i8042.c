/* i8042: ports 0x60 (data) and 0x64 (status/command), registered as one
 * range 0x60-0x64; the offset tells them apart (0x61 is KVM's PIT speaker
 * port and never reaches us; 0x62/0x63 read all ones). */
#include "i8042.h"

#include <errno.h>
#include <string.h>

#include "layout.h"

enum {
	CMD_READ_CTR = 0x20,
	CMD_WRITE_CTR = 0x60,
	CMD_DISABLE_AUX = 0xa7,
	CMD_ENABLE_AUX = 0xa8,
	CMD_TEST_AUX = 0xa9,
	CMD_SELF_TEST = 0xaa,
	CMD_TEST_KBD = 0xab,
	CMD_DISABLE_KBD = 0xad,
	CMD_ENABLE_KBD = 0xae,
	CMD_READ_OUTP = 0xd0,
	CMD_WRITE_OUTP = 0xd1,
	CMD_WRITE_KBD_OUT = 0xd2,
	CMD_WRITE_AUX_OUT = 0xd3,
	CMD_WRITE_AUX = 0xd4,
	CMD_PULSE_RESET = 0xfe,
};

void i8042_init(struct i8042 *k, void (*reset)(void *), void (*irq)(void *), void *opaque)
{
	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->reset = reset;
	k->irq = irq;
	k->opaque = opaque;
	k->status = I8042_STR_SYSFLAG | I8042_STR_KEYLOCK;
	k->ctr = I8042_CTR_KBDINT | I8042_CTR_SYSFLAG;
	k->outp = 0x01; /* reset line released */
}

void i8042_destroy(struct i8042 *k)
{
	pthread_mutex_destroy(&k->lock);
}

/* Called with the lock held. Returns whether the keyboard IRQ should fire. */
static bool i8042_push(struct i8042 *k, uint8_t b)
{
	if (k->count == I8042_BUF_SIZE)
		return false;
	k->buf[(k->head + k->count) % I8042_BUF_SIZE] = b;
	k->count++;
	k->status |= I8042_STR_OBF;
	return (k->ctr & I8042_CTR_KBDINT) != 0;
}

static uint8_t i8042_pop(struct i8042 *k, bool *more)
{
	uint8_t b = 0;
	*more = false;
	if (k->count) {
		b = k->buf[k->head];
		k->head = (k->head + 1) % I8042_BUF_SIZE;
		k->count--;
	}
	if (k->count)
		*more = (k->ctr & I8042_CTR_KBDINT) != 0;
	else
		k->status &= (uint8_t)~I8042_STR_OBF;
	return b;
}

static void i8042_command(struct i8042 *k, uint8_t cmd, bool *irq, bool *reset)
{
	k->status |= I8042_STR_CMDDAT;
	switch (cmd) {
	case CMD_READ_CTR:
		*irq = i8042_push(k, k->ctr);
		break;
	case CMD_WRITE_CTR:
	case CMD_WRITE_OUTP:
	case CMD_WRITE_KBD_OUT:
	case CMD_WRITE_AUX_OUT:
	case CMD_WRITE_AUX:
		k->pending_cmd = cmd;
		break;
	case CMD_SELF_TEST:
		*irq = i8042_push(k, 0x55);
		break;
	case CMD_TEST_KBD:
	case CMD_TEST_AUX:
		*irq = i8042_push(k, 0x00);
		break;
	case CMD_DISABLE_KBD:
		k->ctr |= I8042_CTR_KBDDIS;
		break;
	case CMD_ENABLE_KBD:
		k->ctr &= (uint8_t)~I8042_CTR_KBDDIS;
		break;
	case CMD_DISABLE_AUX:
		k->ctr |= I8042_CTR_AUXDIS;
		break;
	case CMD_ENABLE_AUX:
		k->ctr &= (uint8_t)~I8042_CTR_AUXDIS;
		break;
	case CMD_READ_OUTP:
		*irq = i8042_push(k, k->outp);
		break;
	case CMD_PULSE_RESET:
		*reset = true;
		break;
	default:
		/* Other commands (pulse lines 0xf0-0xfd, unused ones) do nothing. */
		break;
	}
}

static void i8042_data_write(struct i8042 *k, uint8_t v, bool *irq, bool *reset)
{
	uint8_t cmd = k->pending_cmd;
	k->pending_cmd = 0;
	k->status &= (uint8_t)~I8042_STR_CMDDAT;
	switch (cmd) {
	case CMD_WRITE_CTR:
		k->ctr = v;
		break;
	case CMD_WRITE_OUTP:
		k->outp = v;
		/* Bit 0 low asserts the CPU reset line. */
		if (!(v & 0x01))
			*reset = true;
		break;
	case CMD_WRITE_KBD_OUT:
	case CMD_WRITE_AUX_OUT:
		*irq = i8042_push(k, v);
		break;
	case CMD_WRITE_AUX:
		break; /* no mouse */
	default:
		/* A byte for the keyboard itself: acknowledge it. */
		*irq = i8042_push(k, 0xfa);
		if (v == 0xff)
			i8042_push(k, 0xaa); /* reset: self-test passed */
		break;
	}
}

static void i8042_bus_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
	struct i8042 *k = opaque;
	bool more = false;
	memset(data, 0xff, len);
	pthread_mutex_lock(&k->lock);
	if (off == WISP_I8042_DATA_PORT - WISP_I8042_DATA_PORT)
		data[0] = i8042_pop(k, &more);
	else if (off == WISP_I8042_CMD_PORT - WISP_I8042_DATA_PORT)
		data[0] = k->status;
	pthread_mutex_unlock(&k->lock);
	if (more && k->irq)
		k->irq(k->opaque);
}

static void i8042_bus_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
	struct i8042 *k = opaque;
	bool irq = false, reset = false;
	(void)len;
	pthread_mutex_lock(&k->lock);
	if (off == WISP_I8042_DATA_PORT - WISP_I8042_DATA_PORT)
		i8042_data_write(k, data[0], &irq, &reset);
	else if (off == WISP_I8042_CMD_PORT - WISP_I8042_DATA_PORT)
		i8042_command(k, data[0], &irq, &reset);
	if (reset)
		k->resets++;
	pthread_mutex_unlock(&k->lock);
	if (irq && k->irq)
		k->irq(k->opaque);
	if (reset && k->reset)
		k->reset(k->opaque);
}

const struct bus_ops i8042_bus_ops = { .read = i8042_bus_read, .write = i8042_bus_write };

int i8042_send_ctrl_alt_del(struct i8042 *k)
{
	/* Set 2 make codes: Ctrl (0x14), Alt (0x11), Del (0xe0 0x71). */
	static const uint8_t keys[] = { 0x14, 0x11, 0xe0, 0x71 };
	bool irq = false;
	pthread_mutex_lock(&k->lock);
	if (I8042_BUF_SIZE - k->count < sizeof(keys)) {
		pthread_mutex_unlock(&k->lock);
		return -ENOSPC;
	}
	for (size_t i = 0; i < sizeof(keys); i++)
		irq |= i8042_push(k, keys[i]);
	pthread_mutex_unlock(&k->lock);
	if (irq && k->irq)
		k->irq(k->opaque);
	return 0;
}
