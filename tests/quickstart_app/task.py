"""quickstart_app: A Flower / PyTorch app."""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    """A small MLP for 8x8 digit images."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = x.view(-1, 64)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


digits = None  # Cache the dataset


def load_data(partition_id: int, num_partitions: int, batch_size: int):
    """Load partition `partition_id` of the digits data (IID), split 80/20 train/test."""
    global digits
    if digits is None:
        data = load_digits()
        x = torch.tensor(data.data / 16.0, dtype=torch.float32)
        y = torch.tensor(data.target, dtype=torch.int64)
        order = np.random.default_rng(42).permutation(len(y))
        digits = (x[order], y[order])
    x, y = digits
    part = np.array_split(np.arange(len(y)), num_partitions)[partition_id]
    cut = int(0.8 * len(part))
    train, test = part[:cut], part[cut:]
    trainloader = DataLoader(TensorDataset(x[train], y[train]), batch_size=batch_size, shuffle=True)
    testloader = DataLoader(TensorDataset(x[test], y[test]), batch_size=batch_size)
    return trainloader, testloader


def train(net, trainloader, epochs, lr, device):
    """Train the model on the training set."""
    net.to(device)  # move model to GPU if available
    criterion = torch.nn.CrossEntropyLoss().to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    running_loss = 0.0
    for _ in range(epochs):
        for images, labels in trainloader:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = criterion(net(images), labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
    avg_trainloss = running_loss / (epochs * len(trainloader))
    return avg_trainloss


def test(net, testloader, device):
    """Validate the model on the test set."""
    net.to(device)
    criterion = torch.nn.CrossEntropyLoss()
    correct, loss = 0, 0.0
    net.eval()
    with torch.no_grad():
        for images, labels in testloader:
            images, labels = images.to(device), labels.to(device)
            outputs = net(images)
            loss += criterion(outputs, labels).item()
            correct += (torch.max(outputs.data, 1)[1] == labels).sum().item()
    accuracy = correct / len(testloader.dataset)
    loss = loss / len(testloader)
    return loss, accuracy
